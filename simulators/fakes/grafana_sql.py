"""What Grafana does to a PostgreSQL panel query before the database sees it.

Grafana cannot run on this machine, so tests and benchmarks expand the
generated queries themselves, in Grafana's order and with Grafana's rules:

1. the frontend's template service replaces dashboard variables and the
   built-ins ``$__interval``, ``$__interval_ms``, ``$__from``, ``$__to``,
   ``$__range_s``, ``$__range_ms`` (``$name``, ``${name}``, ``${name:raw}``,
   ``[[name]]``); SQL data sources escape a single value's quotes (' -> '')
   and quote and comma-join multi-values (``interpolateVariable``);
2. the backend's ``sqleng.Interpolate``: ``$__interval_ms``, ``$__interval``
   (``gtime.FormatInterval``), ``$__unixEpochFrom()``, ``$__unixEpochTo()``;
3. the PostgreSQL macro engine (``pkg/tsdb/grafana-postgresql-datasource/
   macros.go``) with ``timescaledb: true``: ``$__time``, ``$__timeEpoch``,
   ``$__timeFilter``, ``$__timeFrom``, ``$__timeTo``, ``$__timeGroup`` (which
   becomes ``$__timeGroupAlias`` when directly followed by a comma, as in
   Grafana), ``$__timeGroupAlias``, ``$__unixEpochFilter``,
   ``$__unixEpochNanoFilter``, ``$__unixEpochNanoFrom``, ``$__unixEpochNanoTo``,
   ``$__unixEpochGroup``, ``$__unixEpochGroupAlias``; an unknown macro is an
   error, as in Grafana.

``$__interval`` is computed as the frontend's ``rangeutil.calculateInterval``
does: the range divided by the panel's max data points (its width in pixels
unless set), rounded by ``roundInterval``, not below the data source's
minimum interval. The fill argument of ``$__timeGroup`` is parsed and
returned; Grafana applies it to the result frame, not to the SQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

_ROUND = [  # (below this many ms, round to this many ms): rangeutil.roundInterval
    (10, 1), (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000), (3500, 2000),
    (7500, 5000), (12500, 10000), (17500, 15000), (25000, 20000), (45000, 30000), (90000, 60000),
    (210000, 120000), (450000, 300000), (750000, 600000), (1050000, 900000), (1500000, 1200000),
    (2700000, 1800000), (5400000, 3600000), (9000000, 7200000), (16200000, 10800000), (32400000, 21600000),
    (86400000, 43200000), (604800000, 86400000), (1814400000, 604800000), (3628800000, 2592000000),
]
_YEAR_MS = 31536000000
_UNITS_S = {"y": 31536000, "M": 2592000, "w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}
_MACRO = re.compile(r"\$([_a-zA-Z0-9]+)\(([^\)]*)\)")
_VAR = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?\}")
_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class MacroError(ValueError):
    """Grafana would refuse this query (bad macro or argument)."""


def round_interval(ms: float) -> int:
    for below, to in _ROUND:
        if ms < below:
            return to
    return _YEAR_MS


def interval_to_ms(text: str) -> int:
    """rangeutil.intervalToMs: '1s', '500ms', '2m', or a bare number of seconds."""
    try:
        return int(float(text) * 1000)
    except ValueError:
        pass
    m = re.search(r"(-?\d+(?:\.\d+)?)(ms|[Mwdhmsy])", text)
    if not m:
        raise MacroError(f"invalid interval {text!r}")
    return int(_UNITS_S[m.group(2)] * 1000 * int(float(m.group(1))))


def calculate_interval(t_from: datetime, t_to: datetime, max_data_points: int, min_interval: str = "1s") -> int:
    """The $__interval of a panel in milliseconds (rangeutil.calculateInterval)."""
    span_ms = (t_to - t_from) / timedelta(milliseconds=1)
    return max(round_interval(span_ms / max_data_points), interval_to_ms(min_interval))


def seconds_to_hms(seconds: float) -> str:
    """rangeutil.secondsToHms: how the frontend writes $__interval."""
    y = int(seconds // 31536000)
    if y:
        return f"{y}y"
    d = int((seconds % 31536000) // 86400)
    if d:
        return f"{d}d"
    h = int(((seconds % 31536000) % 86400) // 3600)
    if h:
        return f"{h}h"
    m = int((((seconds % 31536000) % 86400) % 3600) // 60)
    if m:
        return f"{m}m"
    s = int((((seconds % 31536000) % 86400) % 3600) % 60)
    if s:
        return f"{s}s"
    ms = int(seconds * 1000.0)
    return f"{ms}ms" if ms else "less than a millisecond"


def format_interval(ms: int) -> str:
    """gtime.FormatInterval: how the backend writes $__interval."""
    for unit, size in (("y", 31536000000), ("d", 86400000), ("h", 3600000), ("m", 60000), ("s", 1000),
                       ("ms", 1)):
        if ms >= size:
            return f"{ms // size}{unit}"
    return "1ms"


def rfc3339nano(t: datetime) -> str:
    """Go's time.RFC3339Nano of a UTC time: fraction without trailing zeros, 'Z'."""
    t = t.astimezone(UTC)
    frac = f".{t.microsecond:06d}".rstrip("0") if t.microsecond else ""
    return t.strftime("%Y-%m-%dT%H:%M:%S") + frac + "Z"


def _unix(t: datetime) -> int:
    return int(t.timestamp() // 1)


def _unix_nano(t: datetime) -> int:
    return (_unix(t) * 1_000_000 + t.astimezone(UTC).microsecond) * 1000


def parse_interval(text: str, now: datetime | None = None) -> timedelta:
    """gtime.ParseInterval: Go durations ('5m', '1h30m', '500ms') or N d/w/M/y (calendar, from now)."""
    m = re.fullmatch(r"(\d+)([dwMy])", text)
    if m:
        n, unit = int(m.group(1)), m.group(2)
        now = now or datetime.now(UTC)
        if unit == "d":
            return timedelta(days=n)
        if unit == "w":
            return timedelta(days=7 * n)
        months = n if unit == "M" else 12 * n
        y, mo = divmod(now.month - 1 - months, 12)
        try:
            earlier = now.replace(year=now.year + y, month=mo + 1)
        except ValueError:  # Go's AddDate normalises 31 Feb to 3 Mar; close enough for a bucket width
            earlier = now.replace(year=now.year + y, month=mo + 1, day=28)
        return now - earlier
    if not text or not re.fullmatch(rf"(?:{_GO_DURATION.pattern})+", text):
        raise MacroError(f"error parsing interval {text}")
    return timedelta(seconds=sum(float(v) * _GO_UNIT_S[u] for v, u in _GO_DURATION.findall(text)))


@dataclass(frozen=True)
class Fill:
    mode: str  # null | previous | value
    interval_s: float
    value: float | None = None


@dataclass(frozen=True)
class QueryContext:
    """What Grafana knows when it runs one panel's queries."""

    time_from: datetime
    time_to: datetime
    max_data_points: int = 1000
    min_interval: str = "1s"  # the data source's jsonData.timeInterval (provisioning) or the panel's
    variables: dict[str, str | list[str]] = field(default_factory=dict)
    multi: frozenset[str] = frozenset()  # variables with multi-value or "All" enabled

    @property
    def interval_ms(self) -> int:
        return calculate_interval(self.time_from, self.time_to, self.max_data_points, self.min_interval)


@dataclass(frozen=True)
class Expanded:
    sql: str
    interval_ms: int
    fill: Fill | None = None


def _quote(v: str) -> str:
    return "'" + v.replace("'", "''") + "'"


def _interpolate_variable(name: str, value: str | list[str], ctx: QueryContext, fmt: str | None) -> str:
    if fmt == "raw":
        return ",".join(value) if isinstance(value, list) else value
    if fmt not in (None, ""):
        raise MacroError(f"variable format {fmt!r} is not emulated")
    if isinstance(value, list):
        return ",".join(_quote(v) for v in value)
    if name in ctx.multi:
        return _quote(value)
    return value.replace("'", "''")


def template_variables(sql: str, ctx: QueryContext) -> str:
    """Step 1: the frontend's templateSrv.replace with the SQL data sources' interpolateVariable."""
    ms = ctx.interval_ms
    span_ms = int((ctx.time_to - ctx.time_from) / timedelta(milliseconds=1))
    builtins: dict[str, str] = {
        "__interval": seconds_to_hms(ms / 1000), "__interval_ms": str(ms),
        "__from": str(int(ctx.time_from.timestamp() * 1000)), "__to": str(int(ctx.time_to.timestamp() * 1000)),
        "__range_ms": str(span_ms), "__range_s": str(span_ms // 1000),
    }

    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(4)
        fmt = m.group(3) or m.group(6)
        if name in builtins:
            return builtins[name]
        if name in ctx.variables:
            return _interpolate_variable(name, ctx.variables[name], ctx, fmt)
        return m.group(0)  # not a variable (e.g. a macro): left for the backend

    return _VAR.sub(repl, sql)


def global_macros(sql: str, ctx: QueryContext) -> str:
    """Step 2: sqleng.Interpolate."""
    ms = ctx.interval_ms
    sql = sql.replace("$__interval_ms", str(ms))
    sql = sql.replace("$__interval", format_interval(ms))
    sql = sql.replace("$__unixEpochFrom()", str(_unix(ctx.time_from)))
    return sql.replace("$__unixEpochTo()", str(_unix(ctx.time_to)))


def postgres_macros(sql: str, ctx: QueryContext, timescaledb: bool = True) -> tuple[str, Fill | None]:
    """Step 3: the PostgreSQL macro engine."""
    fill: list[Fill] = []
    original = sql

    def evaluate(name: str, args: list[str]) -> str:
        t0, t1 = ctx.time_from, ctx.time_to
        if name in ("__time", "__timeEpoch", "__timeFilter", "__unixEpochFilter", "__unixEpochNanoFilter"):
            if not args or args == [""]:
                raise MacroError(f"missing time column argument for macro {name}")
        if name == "__time":
            return f'{args[0]} AS "time"'
        if name == "__timeEpoch":
            return f'extract(epoch from {args[0]}) as "time"'
        if name == "__timeFilter":
            return f"{args[0]} BETWEEN '{rfc3339nano(t0)}' AND '{rfc3339nano(t1)}'"
        if name == "__timeFrom":
            return f"'{rfc3339nano(t0)}'"
        if name == "__timeTo":
            return f"'{rfc3339nano(t1)}'"
        if name in ("__timeGroup", "__unixEpochGroup"):
            if len(args) < 2:
                raise MacroError(f"macro {name} needs time column and interval and optional fill value")
            interval = parse_interval(args[1].strip("'"))
            secs = interval.total_seconds()
            if len(args) == 3:
                fill.append(_fill(args[2], secs))
            if name == "__unixEpochGroup":
                return f"floor(({args[0]})/{_go_float(secs)})*{_go_float(secs)}"
            if timescaledb:
                return f"time_bucket('{secs:.3f}s',{args[0]})"
            return f"floor(extract(epoch from {args[0]})/{_go_float(secs)})*{_go_float(secs)}"
        if name in ("__timeGroupAlias", "__unixEpochGroupAlias"):
            return evaluate(name.removesuffix("Alias"), args) + ' AS "time"'
        if name == "__unixEpochFilter":
            return f"{args[0]} >= {_unix(t0)} AND {args[0]} <= {_unix(t1)}"
        if name == "__unixEpochNanoFilter":
            return f"{args[0]} >= {_unix_nano(t0)} AND {args[0]} <= {_unix_nano(t1)}"
        if name == "__unixEpochNanoFrom":
            return str(_unix_nano(t0))
        if name == "__unixEpochNanoTo":
            return str(_unix_nano(t1))
        raise MacroError(f'unknown macro "{name}"')

    def repl(m: re.Match[str]) -> str:
        name = m.group(1)
        if name == "__timeGroup":  # pre-5.3 use: "$__timeGroup(...)," means the aliased form
            i = original.find(m.group(0))
            if i >= 0 and original[i + len(m.group(0)):i + len(m.group(0)) + 1] == ",":
                name = "__timeGroupAlias"
        return evaluate(name, [a.strip(" ") for a in m.group(2).split(",")])

    out = _MACRO.sub(repl, sql)
    return out, (fill[-1] if fill else None)


def _go_float(x: float) -> str:
    """fmt %v of a float64 as Go prints it (no trailing .0)."""
    return repr(x).removesuffix(".0") if x == int(x) else repr(x)


def _fill(arg: str, interval_s: float) -> Fill:
    """sqleng.SetupFillmode."""
    a = arg.strip()
    if a == "NULL":
        return Fill("null", interval_s)
    if a == "previous":
        return Fill("previous", interval_s)
    try:
        return Fill("value", interval_s, float(a))
    except ValueError:
        raise MacroError(f"error parsing fill value {a}") from None


def expand(sql: str, ctx: QueryContext) -> Expanded:
    """The SQL Grafana would send to PostgreSQL for this query and context."""
    text = template_variables(sql, ctx)
    text = global_macros(text, ctx)
    text, fill = postgres_macros(text, ctx)
    return Expanded(text, ctx.interval_ms, fill)
