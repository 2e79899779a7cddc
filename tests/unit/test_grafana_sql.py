"""The Grafana query expander used by the dashboard tests, against Grafana's own expectations.

Cases follow Grafana's macros_test.go (PostgreSQL engine) and rangeutil's
interval rounding, so the integration test runs the SQL Grafana would run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from simulators.fakes.grafana_sql import (
    MacroError,
    QueryContext,
    calculate_interval,
    expand,
    format_interval,
    postgres_macros,
    rfc3339nano,
    seconds_to_hms,
)

FROM = datetime(2018, 4, 12, 18, 0, tzinfo=UTC)
TO = FROM + timedelta(minutes=5)
CTX = QueryContext(FROM, TO)


@pytest.mark.parametrize(("sql", "want"), [
    ("select $__time(time_column)", 'select time_column AS "time"'),
    ("select min($__time(time_column))", 'select min(time_column AS "time")'),
    ("WHERE $__timeFilter(time_column)",
     "WHERE time_column BETWEEN '2018-04-12T18:00:00Z' AND '2018-04-12T18:05:00Z'"),
    ("select $__timeFrom()", "select '2018-04-12T18:00:00Z'"),
    ("select $__timeTo()", "select '2018-04-12T18:05:00Z'"),
    ("GROUP BY $__timeGroup(time_column,'5m')", "GROUP BY time_bucket('300.000s',time_column)"),
    ("GROUP BY $__timeGroup(time_column , '5m')", "GROUP BY time_bucket('300.000s',time_column)"),
    ("GROUP BY $__timeGroup(time_column , '12d')", "GROUP BY time_bucket('1036800.000s',time_column)"),
    ("GROUP BY $__timeGroup(time_column , '20ms')", "GROUP BY time_bucket('0.020s',time_column)"),
    ("SELECT $__timeGroup(time_column,'5m'), value", "SELECT time_bucket('300.000s',time_column) AS \"time\", value"),
    ("SELECT $__timeGroup(time_column,'5m') as time, value",
     "SELECT time_bucket('300.000s',time_column) as time, value"),
    ("SELECT $__timeGroupAlias(time_column,'5m')", "SELECT time_bucket('300.000s',time_column) AS \"time\""),
    ("select $__unixEpochFilter(time)", f"select time >= {int(FROM.timestamp())} AND time <= {int(TO.timestamp())}"),
    ("select $__unixEpochNanoFilter(time)",
     f"select time >= {int(FROM.timestamp()) * 10**9} AND time <= {int(TO.timestamp()) * 10**9}"),
    ("select $__unixEpochNanoFrom()", f"select {int(FROM.timestamp()) * 10**9}"),
    ("SELECT $__unixEpochGroup(time_column+time_adjustment,'5m')",
     "SELECT floor((time_column+time_adjustment)/300)*300"),
    ("SELECT $__unixEpochGroupAlias(t,'5m')", 'SELECT floor((t)/300)*300 AS "time"'),
])
def test_postgres_macros_as_grafana(sql: str, want: str) -> None:
    assert postgres_macros(sql, CTX)[0] == want


def test_without_timescaledb_time_group_is_floor_of_epoch() -> None:
    assert postgres_macros("SELECT $__timeGroup(time_column,'5m')", CTX, timescaledb=False)[0] == \
        "SELECT floor(extract(epoch from time_column)/300)*300"


def test_fractional_seconds_and_old_dates() -> None:
    assert rfc3339nano(datetime(1960, 2, 1, 7, 0, 0, 500000, tzinfo=UTC)) == "1960-02-01T07:00:00.5Z"


def test_unknown_macro_and_bad_fill_fail_like_grafana() -> None:
    with pytest.raises(MacroError):
        postgres_macros("SELECT $__nope(x)", CTX)
    with pytest.raises(MacroError):
        postgres_macros("SELECT $__timeGroup(t, '1m', banana)", CTX)
    assert postgres_macros("SELECT $__timeGroupAlias(t, '1h', 0)", CTX)[1] is not None


@pytest.mark.parametrize(("span", "points", "ms", "text"), [
    (timedelta(hours=1), 1000, 5000, "5s"),
    (timedelta(hours=6), 1000, 20000, "20s"),
    (timedelta(hours=12), 1000, 30000, "30s"),
    (timedelta(hours=24), 1000, 60000, "1m"),
    (timedelta(days=30), 1000, 1800000, "30m"),
    (timedelta(minutes=5), 1000, 1000, "1s"),  # not below the data source's minimum interval
])
def test_interval_like_the_frontend(span: timedelta, points: int, ms: int, text: str) -> None:
    assert calculate_interval(FROM, FROM + span, points, "1s") == ms
    assert seconds_to_hms(ms / 1000) == text == format_interval(ms)


def test_variables_interval_and_escaping() -> None:
    ctx = QueryContext(FROM, FROM + timedelta(hours=24), variables={"point": "7", "plant": "o'brien",
                                                                    "gws": ["a", "b'c"]})
    out = expand("SELECT $__timeGroupAlias(time, $__interval), $__interval_ms FROM t WHERE p = '$point'::int"
                 " AND plant = '${plant}' AND gw IN ($gws) AND $__unixEpochFrom() > 0", ctx)
    assert out.sql == ("SELECT time_bucket('60.000s',time) AS \"time\", 60000 FROM t WHERE p = '7'::int"
                       f" AND plant = 'o''brien' AND gw IN ('a','b''c') AND {int(FROM.timestamp())} > 0")
    assert out.interval_ms == 60000
