"""The SQL behind every panel, with Grafana's PostgreSQL macros.

Raw or rollup — how a time-series query picks its source
--------------------------------------------------------
A value panel groups readings into buckets of ``$__interval`` (Grafana's
time range / panel width, rounded to 1s, 5s, ..., 1m, 2m, 5m, ..., 1h, 1d).
Every such interval of a minute or more is a whole number of minutes, and
``time_bucket`` aligns buckets of both tables alike, so grouping the minute
rows of ``readings_1m`` gives *exactly* the buckets grouping raw readings
would: min of mins, max of maxes, sum(sum)/sum(count) for the mean, the last
by time for state points. Each query is therefore a UNION ALL of

- a raw branch, taken when ``$__interval_ms < 60000`` (sub-minute buckets
  need raw data) and the range starts at or after the oldest raw reading
  still kept (retention drops raw chunks first), and
- a rollup branch, taken otherwise,

each guarded by the same condition (negated), so PostgreSQL evaluates it once
as a one-time filter and runs only one branch. In practice a panel ~1,000 px
wide reads raw readings up to a range of about 12 h and the rollup beyond;
at 1 Hz a 30-day panel reads 43,200 rollup rows instead of 2.6 M readings.

Every query reads the views of the ``grafana`` schema (core/migrations/0009_grafana_views.sql), never a
table: Grafana's database role is a member of ``grafana_reader``, which may SELECT those views and nothing
else, so a panel an editor writes cannot read whistle-blowers, token or credential hashes, contacts, the
audit log or notifications.

Template variables are interpolated by Grafana as text; they are always used
inside quotes and cast ('$point'::int), which Grafana escapes for single-value
variables, so a crafted URL cannot inject SQL.
"""

from __future__ import annotations

from collections.abc import Iterable

MINUTE_MS = 60_000

# Raw readings serve this query only for sub-minute buckets inside the raw retention horizon.
RAW_WHEN = ("$__interval_ms < 60000"
            " AND $__timeFrom() >= (SELECT coalesce(min(time), '-infinity') FROM grafana.readings)")

INDUSTRY_ZH = {"cement": "水泥", "lime": "石灰", "refractory": "耐火材料", "foundry": "铸造", "machinery": "机械"}
SEVERITY_ZH = {"urgent": "紧急", "high": "高", "medium": "中", "low": "低"}
STATE_ZH = {"unack": "未确认", "ack": "已确认", "rtn_unack": "已恢复未确认", "normal": "正常"}
EVENT_ZH = {"activate": "报警", "clear": "恢复", "ack": "确认", "shelve": "搁置", "unshelve": "取消搁置",
            "out_of_service": "停用", "return_to_service": "恢复启用", "chatter": "振荡", "chatter_end": "振荡结束"}


def lit(s: str) -> str:
    """A SQL string literal (standard_conforming_strings is on since PostgreSQL 9.1)."""
    return "'" + s.replace("'", "''") + "'"


def num(x: float) -> str:
    return repr(float(x))


def case_label(expr: str, labels: dict[str, str], default: str | None = None) -> str:
    """CASE expr WHEN key THEN 'label (key)' ... for showing codes in Chinese first."""
    whens = " ".join(f"WHEN {lit(k)} THEN {lit(f'{v} {k}')}" for k, v in labels.items())
    return f"CASE {expr} {whens} ELSE {default or expr} END"


def values_table(alias: str, columns: tuple[str, ...], rows: Iterable[tuple[object, ...]],
                 types: tuple[str, ...]) -> str:
    """An inline VALUES table (with typed columns) generated from the catalog or registry."""
    def cell(v: object, t: str) -> str:
        if v is None:
            return f"NULL::{t}"
        if isinstance(v, str):
            return f"{lit(v)}::{t}"
        return f"{num(v) if isinstance(v, float) else v}::{t}"
    body = ", ".join("(" + ", ".join(cell(v, t) for v, t in zip(r, types, strict=True)) + ")" for r in rows)
    if not body:
        body = "(" + ", ".join(f"NULL::{t}" for t in types) + ")"
        return f"(SELECT * FROM (VALUES {body}) AS v({', '.join(columns)}) WHERE false) AS {alias}"
    return f"(VALUES {body}) AS {alias}({', '.join(columns)})"


# --- values of one point -----------------------------------------------------------------------


def point_series(point: str, state: bool) -> str:
    """Mean, min and max (analog) or the last state (boolean/enum) of one point per $__interval.

    ``point`` is an SQL expression for the point id: a literal, or '$point'::int.
    """
    if state:
        raw_cols, roll_cols = 'last(value, time) AS "状态 state"', 'last(last, last_time) AS "状态 state"'
    else:
        raw_cols = 'avg(value) AS "均值 mean", min(value) AS "最小 min", max(value) AS "最大 max"'
        roll_cols = 'sum(sum) / sum(count) AS "均值 mean", min(min) AS "最小 min", max(max) AS "最大 max"'
    return f"""-- 分钟以下粒度读原始数据, 其余读分钟汇总 (raw below 1-minute buckets, readings_1m otherwise)
SELECT $__timeGroupAlias(time, $__interval), {raw_cols}
FROM grafana.readings
WHERE point_id = {point} AND $__timeFilter(time) AND {RAW_WHEN}
GROUP BY 1
UNION ALL
SELECT $__timeGroupAlias(bucket, $__interval), {roll_cols}
FROM grafana.readings_1m
WHERE point_id = {point} AND $__timeFilter(bucket) AND NOT ({RAW_WHEN})
GROUP BY 1
ORDER BY 1"""


def point_latest(point: str) -> str:
    """The newest reading of a point in the range (from the rollup's last when raw data is gone)."""
    return f"""SELECT r.time AS "time", r.value AS "最新值 latest"
FROM ((SELECT time, value FROM grafana.readings
       WHERE point_id = {point} AND $__timeFilter(time) ORDER BY time DESC LIMIT 1)
      UNION ALL
      (SELECT last_time, last FROM grafana.readings_1m
       WHERE point_id = {point} AND $__timeFilter(bucket) AND last_time <= $__timeTo()
       ORDER BY bucket DESC LIMIT 1)) AS r
ORDER BY r.time DESC
LIMIT 1"""


def point_rate(point: str) -> str:
    """Readings per minute (data completeness), from the rollup's counts."""
    return f"""SELECT $__timeGroupAlias(bucket, $__interval),
       sum(count) * 60000.0 / greatest($__interval_ms, 60000) AS "读数/分钟 readings per minute"
FROM grafana.readings_1m
WHERE point_id = {point} AND $__timeFilter(bucket)
GROUP BY 1
ORDER BY 1"""


def setpoint_lines(point: str, limits: list[tuple[int, str, float]]) -> str:
    """The rule setpoints of a point as flat series across the range (one per limit).

    ``limits``: (point id, label, value) for every point, generated from the compiled catalog.
    """
    table = values_table("s", ("point_id", "label", "value"), limits, ("int", "text", "float8"))
    return f"""SELECT e.t AS "time", s.label AS metric, s.value AS "value"
FROM {table}
CROSS JOIN (VALUES ($__timeFrom()::timestamptz), ($__timeTo()::timestamptz)) AS e(t)
WHERE s.point_id = {point}
ORDER BY 1, 2"""


def point_info(point: str) -> str:
    return f"""SELECT pt.tag AS "位号 tag", pt.name AS "名称 name", pt.quantity AS "量 quantity",
       pt.unit AS "单位 unit", d.code || ' ' || d.name AS "设备 device", pt.gateway_id AS "网关 gateway",
       pt.interval_s AS "周期 interval s", pt.required AS "必报 required"
FROM grafana.points pt JOIN grafana.devices d ON d.id = pt.device_id
WHERE pt.id = {point}"""


def point_alarm_history(point: str, titles: str) -> str:
    return f"""SELECT e.time AS "时间 time", {case_label('e.event', EVENT_ZH)} AS "事件 event",
       coalesce(t.title, e.rule_id) AS "规则 rule", e.from_state || ' → ' || e.to_state AS "状态 state",
       e.value AS "值 value", e.actor AS "操作人 actor", e.reason AS "说明 reason"
FROM grafana.alarm_events e LEFT JOIN {titles} ON t.rule_id = split_part(e.rule_id, ':', 1)
WHERE e.point_id = {point} AND $__timeFilter(e.time)
ORDER BY e.time DESC
LIMIT 500"""


# --- a plant -----------------------------------------------------------------------------------


def _gateway_online(silent_s: float) -> str:
    return (f"(g.enabled AND g.online IS NOT FALSE AND g.last_seen >= now() - interval '1 second' * {num(silent_s)})")


def plant_gateways(plant_id: str, silent_s: float) -> str:
    return f"""SELECT g.id AS "网关 gateway", coalesce(g.name, '') AS "名称 name",
       CASE WHEN {_gateway_online(silent_s)} THEN 1 ELSE 0 END AS "在线 online",
       g.last_seen AS "最后通信 last seen", g.status_at AS "状态上报 status at"
FROM grafana.gateways g
WHERE g.plant_id = {lit(plant_id)}
ORDER BY g.id"""


def plant_active_alarms(plant_id: str, titles: str) -> str:
    return f"""SELECT a.activated_at AS "时间 since", {case_label('a.severity', SEVERITY_ZH)} AS "级别 severity",
       {case_label('a.state', STATE_ZH)} AS "状态 state", coalesce(t.title, a.rule_id) AS "报警 alarm",
       coalesce(p.tag, a.gateway_id) AS "位号 tag", coalesce(p.name, '') AS "测点 point", a.value AS "值 value",
       concat_ws(' ', CASE WHEN a.candidate THEN '★重大隐患候选 candidate' END,
                 CASE WHEN a.shelved_until > now() THEN '搁置 shelved' END,
                 CASE WHEN a.out_of_service THEN '停用 out of service' END,
                 CASE WHEN a.chattering THEN '振荡 chattering' END) AS "标记 flags",
       a.reason AS "说明 reason"
FROM grafana.alarms a LEFT JOIN grafana.points p ON p.id = a.point_id
LEFT JOIN {titles} ON t.rule_id = split_part(a.rule_id, ':', 1)
WHERE a.plant_id = {lit(plant_id)} AND a.state <> 'normal'
ORDER BY CASE a.severity WHEN 'urgent' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2 ELSE 3 END,
         a.activated_at DESC NULLS LAST"""


def alarm_annotations(plant_id: str, event: str, titles: str) -> str:
    """Grafana SQL annotations: columns time, text, tags."""
    return f"""SELECT e.time AS "time",
       concat_ws(' ', coalesce(t.title, e.rule_id), coalesce(p.tag, e.gateway_id), e.value::text, e.reason) AS text,
       concat_ws(',', e.severity, e.event, e.rule_id) AS tags
FROM grafana.alarm_events e LEFT JOIN grafana.points p ON p.id = e.point_id
LEFT JOIN {titles} ON t.rule_id = split_part(e.rule_id, ':', 1)
WHERE e.plant_id = {lit(plant_id)} AND e.event = {lit(event)} AND $__timeFilter(e.time)
ORDER BY e.time"""


# --- the bureau --------------------------------------------------------------------------------


# Hazard ledger: counts of every ticket from grafana.hazard_counts (per enterprise, industry, source, status), rows
# of open tickets from grafana.open_hazards; neither view has reporters, rewards, contacts or descriptions.
_OPEN_CONFIRMED = "('confirmed', 'plan_filed', 'rectifying', 'submitted')"


def open_hazards_total() -> str:
    return f"""SELECT now() AS "time",
       coalesce(sum(tickets) FILTER (WHERE status = 'candidate'), 0)::float8 AS "待判定候选 candidates",
       coalesce(sum(tickets) FILTER (WHERE status IN {_OPEN_CONFIRMED}), 0)::float8 AS "未销号重大隐患 open confirmed"
FROM grafana.hazard_counts"""


def open_hazards_by_enterprise() -> str:
    return f"""SELECT {case_label('c.industry', INDUSTRY_ZH)} AS "行业 industry",
       c.enterprise_name AS "企业 enterprise",
       coalesce(sum(c.tickets) FILTER (WHERE c.status = 'candidate'), 0)::bigint AS "待判定 candidates",
       coalesce(sum(c.tickets) FILTER (WHERE c.status IN {_OPEN_CONFIRMED}), 0)::bigint AS "未销号 open confirmed",
       min(c.oldest_detected_at) AS "最早 oldest"
FROM grafana.hazard_counts c
WHERE c.status NOT IN ('dismissed', 'closed')
GROUP BY c.industry, c.enterprise_name
ORDER BY 4 DESC, 3 DESC, 1, 2"""


def open_hazards_list() -> str:
    return """SELECT h.detected_at AS "发现 detected", e.name AS "企业 enterprise", pl.name AS "厂区 plant",
       h.title AS "隐患 hazard", h.basis AS "依据 basis", h.status AS "状态 status"
FROM grafana.open_hazards h JOIN grafana.enterprises e ON e.id = h.enterprise_id
LEFT JOIN grafana.plants pl ON pl.id = h.plant_id
ORDER BY h.detected_at DESC
LIMIT 200"""


def overdue_hazards() -> str:
    return """SELECT e.name AS "企业 enterprise", h.title AS "隐患 hazard", h.plan_deadline AS "整改期限 deadline",
       round((extract(epoch FROM now() - h.plan_deadline) / 86400)::numeric, 1) AS "逾期天数 days overdue",
       coalesce(h.supervision_level, '') AS "挂牌督办 supervision"
FROM grafana.open_hazards h JOIN grafana.enterprises e ON e.id = h.enterprise_id
WHERE h.status IN ('plan_filed', 'rectifying') AND h.plan_deadline < now()
ORDER BY h.plan_deadline
LIMIT 200"""


def alarms_per_hour() -> str:
    return f"""SELECT $__timeGroupAlias(e.time, '1h', 0), {case_label('pl.industry', INDUSTRY_ZH)} AS metric,
       count(*) AS "报警 alarms"
FROM grafana.alarm_events e JOIN grafana.plants pl ON pl.id = e.plant_id
WHERE $__timeFilter(e.time) AND e.event = 'activate'
GROUP BY 1, 2
ORDER BY 1"""


def active_alarms_by_severity() -> str:
    return f"""SELECT {case_label('a.severity', SEVERITY_ZH)} AS "级别 severity", count(*) AS "报警 alarms"
FROM grafana.alarms a
WHERE a.state <> 'normal'
GROUP BY a.severity
ORDER BY min(CASE a.severity WHEN 'urgent' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2 ELSE 3 END)"""


def gateway_online_rate(silent_s: float) -> str:
    return f"""SELECT now() AS "time",
       100.0 * count(*) FILTER (WHERE {_gateway_online(silent_s)}) / greatest(count(*), 1) AS "在线率 online %"
FROM grafana.gateways g WHERE g.enabled"""


def gateways_offline(silent_s: float) -> str:
    return f"""SELECT e.name AS "企业 enterprise", pl.name AS "厂区 plant", g.id AS "网关 gateway",
       coalesce(g.name, '') AS "名称 name", g.last_seen AS "最后通信 last seen",
       CASE WHEN g.online IS FALSE THEN '离线上报 reported offline' ELSE '无通信 silent' END AS "原因 why"
FROM grafana.gateways g JOIN grafana.plants pl ON pl.id = g.plant_id
JOIN grafana.enterprises e ON e.id = pl.enterprise_id
WHERE g.enabled AND NOT {_gateway_online(silent_s)}
ORDER BY g.last_seen NULLS FIRST"""


def dead_letters_per_hour() -> str:
    return """SELECT $__timeGroupAlias(received_at, '1h', 0), reason AS metric, count(*) AS "死信 dead letters"
FROM grafana.dead_letters
WHERE $__timeFilter(received_at)
GROUP BY 1, 2
ORDER BY 1"""


def dead_letters_recent() -> str:
    return """SELECT received_at AS "接收 received", coalesce(gateway_id, '') AS "网关 gateway",
       reason AS "原因 reason", left(coalesce(detail, ''), 200) AS "详情 detail", topic AS "主题 topic"
FROM grafana.dead_letters
WHERE $__timeFilter(received_at)
ORDER BY received_at DESC
LIMIT 100"""


# --- template variables ------------------------------------------------------------------------


def plant_options() -> str:
    return """SELECT p.id AS __value, p.name || ' ' || p.id AS __text FROM grafana.plants p ORDER BY p.id"""


def point_options() -> str:
    return """SELECT pt.id AS __value, pt.tag || ' ' || coalesce(pt.name, '') || ' · ' || d.code AS __text
FROM grafana.points pt JOIN grafana.devices d ON d.id = pt.device_id
WHERE d.plant_id = '$plant'
ORDER BY d.code, pt.tag"""


# --- alarm-system health per operator position (ISA-18.2 / EEMUA 191; hazards/records/health.py) ------------------
# From grafana.position_alarm_events and grafana.alarm_positions (core/migrations/0017_grafana_alarm_health.sql).
# The figures follow hazards.records.health: an alarm is an annunciated activation at or above the position's
# minimum severity; a flood is a clock-aligned 10-minute interval with more than 10 alarms; the share of time in
# flood divides by the intervals of the range, ceil(range / 10 min), as `health.compute` does (both agree
# exactly when the range starts on a 10-minute boundary); standing is active at the range's end for over 24 h.

FLOOD_ABOVE = 10  # hazards.records.health.FLOOD_ABOVE
ACCEPTABLE_PER_10MIN = 1  # EEMUA 191: a long-term average under 1 per 10 minutes is very likely acceptable
TOP_N = 10  # hazards.records.health.TOP_N

_ALARM = "e.event = 'activate' AND e.annunciate"
# Half-open [from, to) like health.compute, not $__timeFilter's BETWEEN: an alarm on the boundary of two adjacent
# ranges counts in one of them, and a range ending on 10-minute boundary does not start an extra interval.
_IN_RANGE = "e.time >= $__timeFrom() AND e.time < $__timeTo()"


def position_label(alias: str) -> str:
    return f"{alias}.position_id || ' ' || {alias}.name"


def alarms_per_10min_by_position() -> str:
    return f"""SELECT time_bucket('10 minutes', e.time) AS "time", e.position_id AS metric,
       count(*)::float8 AS "报警/10分钟 alarms per 10 min"
FROM grafana.position_alarm_events e
WHERE {_IN_RANGE} AND {_ALARM}
GROUP BY 1, 2
ORDER BY 1, 2"""


def time_in_flood_by_position() -> str:
    return f"""WITH buckets AS (
    SELECT e.position_id, count(*) AS alarms
    FROM grafana.position_alarm_events e
    WHERE {_IN_RANGE} AND {_ALARM}
    GROUP BY e.position_id, time_bucket('10 minutes', e.time)),
range AS (SELECT greatest(ceil(extract(epoch FROM $__timeTo()::timestamptz - $__timeFrom()::timestamptz) / 600.0),
                          1) AS intervals)
SELECT {position_label('p')} AS "岗位 position",
       (100.0 * count(b.position_id) FILTER (WHERE b.alarms > {FLOOD_ABOVE}) / r.intervals)::float8
           AS "洪水时间占比 % time in flood",
       (count(b.position_id) FILTER (WHERE b.alarms > {FLOOD_ABOVE}) * 10)::float8 AS "洪水分钟 flood minutes"
FROM grafana.alarm_positions p CROSS JOIN range r
LEFT JOIN buckets b ON b.position_id = p.position_id
GROUP BY p.position_id, p.name, r.intervals
ORDER BY 2 DESC, p.position_id"""


def standing_alarms_by_position() -> str:
    """Alarms active at the end of the range and active for more than 24 hours then.

    Active since more than 24 h before the end = the alarm's last activate/clear before (end - 24 h) is an
    activation and no clear came in [end - 24 h, end). No time filter on purpose: a standing alarm may have been
    raised long before the range."""
    return """WITH t AS (SELECT $__timeTo()::timestamptz AS end_at,
                  $__timeTo()::timestamptz - interval '24 hours' AS cut),
before AS (
    SELECT DISTINCT ON (e.position_id, e.rule_id, e.subject) e.position_id, e.rule_id, e.subject, e.event
    FROM grafana.position_alarm_events e, t
    WHERE e.time < t.cut
    ORDER BY e.position_id, e.rule_id, e.subject, e.time DESC),
standing AS (
    SELECT b.position_id FROM before b, t
    WHERE b.event = 'activate' AND NOT EXISTS (
        SELECT FROM grafana.position_alarm_events c
        WHERE c.position_id = b.position_id AND c.rule_id = b.rule_id AND c.subject = b.subject
          AND c.event = 'clear' AND c.time >= t.cut AND c.time < t.end_at))
SELECT p.position_id || ' ' || p.name AS "岗位 position", count(s.position_id)::float8 AS "长期报警 standing > 24 h"
FROM grafana.alarm_positions p LEFT JOIN standing s ON s.position_id = p.position_id
GROUP BY p.position_id, p.name
ORDER BY 2 DESC, p.position_id"""


def bad_actors_by_position(titles: str) -> str:
    """The TOP_N most frequent alarms (rule × subject) of each position with their share of its alarms; ties in
    the order of hazards.records.health (rule, then subject, by code point: COLLATE "C")."""
    return f"""WITH counts AS (
    SELECT e.position_id, e.rule_id, e.subject, count(*) AS alarms
    FROM grafana.position_alarm_events e
    WHERE {_IN_RANGE} AND {_ALARM}
    GROUP BY 1, 2, 3),
ranked AS (
    SELECT c.*, row_number() OVER (PARTITION BY c.position_id
                                   ORDER BY c.alarms DESC, c.rule_id COLLATE "C", c.subject COLLATE "C") AS rank,
           sum(c.alarms) OVER (PARTITION BY c.position_id) AS total
    FROM counts c)
SELECT r.position_id AS "岗位 position", r.rank AS "排名 rank", coalesce(t.title, r.rule_id) AS "报警 alarm",
       r.rule_id AS "规则 rule", r.subject AS "对象 subject", r.alarms AS "次数 alarms",
       (100.0 * r.alarms / r.total)::float8 AS "占比 share %"
FROM ranked r LEFT JOIN {titles} ON t.rule_id = split_part(r.rule_id, ':', 1)
WHERE r.rank <= {TOP_N}
ORDER BY r.position_id, r.rank"""
