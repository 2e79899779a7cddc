"""The dashboards, built with grafana-foundation-sdk from a SiteView.

- one control-room dashboard per plant (uid ``rw-plant-<plant>``): active
  alarms, gateways online, then a row per device with a panel per point whose
  thresholds are the rule setpoints of that point, and alarm annotations;
- the bureau overview (``rw-bureau``): candidate and open confirmed hazards and overdue rectifications by industry and
  enterprise, alarms per hour, gateway online rate, dead letters, and the alarm-system health row (alarms per
  10 minutes, % time in flood, standing alarms and top-10 bad actors per operator position);
- point detail (``rw-point``) with ``$plant`` and ``$point`` variables.

Every query is collected with what it must return (`TargetSpec`), so tests and
benchmarks run exactly the SQL Grafana will run.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from grafana_foundation_sdk.builders import bargauge, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from api.grafana import queries as q
from api.grafana.pgquery import PLUGIN_ID, Expectation, Format, PgQueryBuilder, SqlAnnotationTargetBuilder
from api.grafana.source import Limit, PlantView, PointView, SiteView

DATASOURCE_UID = "riskwatch-tsdb"
FOLDER_UID = "riskwatch"
FOLDER_TITLE = "风险监测预警 riskwatch"
BUREAU_UID = "rw-bureau"
POINT_UID = "rw-point"
TAGS = ["riskwatch"]
SEVERITY_COLOR = {"low": "yellow", "medium": "orange", "high": "red", "urgent": "dark-red"}
NORMAL = "transparent"
UNITS = {"°C": "celsius", "ppm": "ppm", "%": "percent", "kPa": "pressurekpa", "hPa": "pressurehpa",
         "bar": "pressurebar", "A": "amp", "V": "volt", "kW": "kwatt", "m": "lengthm"}


@dataclass(frozen=True)
class TargetSpec:
    """One query of a dashboard as Grafana will send it, with what it must return."""

    where: str  # "panel <id> <title>" | "annotation <name>" | "variable <name>"
    ref_id: str
    sql: str
    expect: Expectation


@dataclass
class GeneratedDashboard:
    uid: str
    title: str
    model: dm.Dashboard
    targets: list[TargetSpec] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(JSONEncoder(sort_keys=True).encode(self.model))
        for panel in out.get("panels") or []:
            if panel.get("options") is None:  # the SDK writes null for panels without options
                panel["options"] = {}
        return out


def uid_for(prefix: str, key: str) -> str:
    """A Grafana uid (<= 40 chars of [A-Za-z0-9_-]) stable for this key."""
    clean = re.sub(r"[^A-Za-z0-9_-]", "-", key)
    uid = f"{prefix}-{clean}"
    if uid != f"{prefix}-{key}" or len(uid) > 40:
        digest = hashlib.sha1(key.encode()).hexdigest()[:8]
        uid = f"{prefix}-{clean[:40 - len(prefix) - 10]}-{digest}"
    return uid


def grafana_unit(unit: str) -> str:
    if not unit:
        return "none"
    return UNITS.get(unit, f"suffix: {unit}")


def threshold_steps(limits: Iterable[Limit]) -> list[dm.Threshold]:
    """Grafana threshold steps (colour from a value up) for hi and lo limits together.

    A value's colour is that of the most severe limit it breaks: above a hi
    limit or below a lo limit.
    """
    lims = list(limits)
    if not lims:
        return [dm.Threshold(None, NORMAL)]
    rank = {"low": 0, "medium": 1, "high": 2, "urgent": 3}

    def colour(v: float) -> str:
        broken = [lim for lim in lims if (v >= lim.value if lim.side == "hi" else v < lim.value)]
        if not broken:
            return NORMAL
        return SEVERITY_COLOR.get(max(broken, key=lambda lim: rank.get(lim.severity, 0)).severity, "red")

    xs = sorted({lim.value for lim in lims})
    steps = [dm.Threshold(None, colour(xs[0] - 1.0))]
    for x in xs:
        c = colour(x)
        if c != steps[-1].color:
            steps.append(dm.Threshold(x, c))
    return steps


def _severity_mappings() -> list[dm.ValueMapping]:
    """Colours for the severity column, whose values are written as in queries.SEVERITY_ZH."""
    return [dm.ValueMap({f"{zh} {en}": dm.ValueMappingResult(color=SEVERITY_COLOR[en], index=i)
                         for i, (en, zh) in enumerate(q.SEVERITY_ZH.items())})]


def _thresholds(steps: list[dm.Threshold]) -> db.ThresholdsConfig:
    return db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps(steps)


def _state_mappings(states: dict[str, str] | None) -> list[dm.ValueMapping]:
    if not states:
        return []
    palette = ["green", "blue", "orange", "red", "purple", "yellow", "dark-red", "light-blue"]
    opts = {k: dm.ValueMappingResult(text=f"{v} ({k})", color=palette[i % len(palette)], index=i)
            for i, (k, v) in enumerate(states.items())}
    return [dm.ValueMap(opts)]


class _Builder:
    """Holds a dashboard builder, numbers its panels and records every target."""

    def __init__(self, uid: str, title: str, ds: dm.DataSourceRef, description: str):
        self.ds = ds
        self.uid = uid
        self.title = title
        self.d = (db.Dashboard(title).uid(uid).description(description).tags(TAGS).timezone("browser")
                  .time("now-6h", "now").refresh("30s").tooltip(dm.DashboardCursorSync.CROSSHAIR).readonly())
        self.targets: list[TargetSpec] = []
        self.annotations: list[db.AnnotationQuery] = []
        self._id = 0

    def query(self, sql: str, fmt: Format = "time_series", ref: str = "A",
              columns: tuple[str, ...] = ()) -> PgQueryBuilder:
        return PgQueryBuilder(sql, fmt).ref_id(ref).datasource(self.ds).expect(Expectation(fmt, columns))

    def panel(self, p: Any, w: int, h: int) -> None:
        self._id += 1
        p.id(self._id).datasource(self.ds).span(w).height(h)
        built = p.build()
        for t in built.targets or []:
            self.targets.append(TargetSpec(f"panel {self._id} {built.title}", t.ref_id, t.raw_sql, t.expect))
        self.d.with_panel(p)

    def row(self, title: str) -> None:
        self._id += 1
        self.d.with_row(db.Row(title).id(self._id))

    def annotation(self, name: str, sql: str, colour: str) -> None:
        self.targets.append(TargetSpec(f"annotation {name}", "Anno", sql,
                                       Expectation("table", ("time", "text", "tags"))))
        self.annotations.append(db.AnnotationQuery().name(name).datasource(self.ds).enable(True).hide(False)
                                 .icon_color(colour).target(SqlAnnotationTargetBuilder(sql)))

    def variable(self, name: str, label: str, sql: str) -> db.QueryVariable:
        self.targets.append(TargetSpec(f"variable {name}", name, sql, Expectation("table", ("__value", "__text"))))
        return (db.QueryVariable(name).id(name).label(label).query(sql).datasource(self.ds)
                .refresh(dm.VariableRefresh.ON_DASHBOARD_LOAD).sort(dm.VariableSort.DISABLED))

    def done(self) -> GeneratedDashboard:
        if self.annotations:
            self.d.annotations(list(self.annotations))
        return GeneratedDashboard(self.uid, self.title, self.d.build(), self.targets)


def _value_panel(point: PointView, link: str) -> Any:
    if point.is_state:
        return (statetimeline.Panel().title(point.title)
                .mappings(_state_mappings(point.states)).show_value(cm.VisibilityMode.AUTO)
                .links([db.DashboardLink("测点详情 Point detail").url(link).target_blank(False)]))
    steps = threshold_steps(point.limits)
    p = (timeseries.Panel().title(point.title).unit(grafana_unit(point.unit))
         .thresholds(_thresholds(steps))
         .thresholds_style(cb.GraphThresholdsStyleConfig().mode(cm.GraphTresholdsStyleMode.DASHED_AND_AREA))
         .legend(cb.VizLegendOptions().display_mode(cm.LegendDisplayMode.LIST).placement(cm.LegendPlacement.BOTTOM)
                 .show_legend(True).calcs(["lastNotNull", "min", "max"]))
         .line_width(1).fill_opacity(0).span_nulls(False)
         .links([db.DashboardLink("测点详情 Point detail").url(link).target_blank(False)]))
    # min and max only as a faint band around the mean
    hide_legend = dm.DynamicConfigValue("custom.hideFrom", {"legend": True, "tooltip": False, "viz": False})
    p.override_by_name("最小 min", [dm.DynamicConfigValue("custom.lineWidth", 0), hide_legend])
    p.override_by_name("最大 max", [dm.DynamicConfigValue("custom.lineWidth", 0), hide_legend,
                                   dm.DynamicConfigValue("custom.fillBelowTo", "最小 min"),
                                   dm.DynamicConfigValue("custom.fillOpacity", 15)])
    if point.limits:
        desc = "；".join(f"{lim.rule_id} {'≥' if lim.side == 'hi' else '≤'} {lim.value:g}" for lim in point.limits)
        p.description(f"规则设定值 rule setpoints: {desc}")
    return p


def _add_query(panel: Any, b: _Builder, sql: str, fmt: Format = "time_series", ref: str = "A",
               columns: tuple[str, ...] = ()) -> Any:
    return panel.with_target(b.query(sql, fmt, ref, columns))


def _titles_table(titles: dict[str, str], only: Iterable[str] | None = None) -> str:
    keep = sorted(titles if only is None else set(only) & set(titles))
    return q.values_table("t", ("rule_id", "title"), [(k, titles[k]) for k in keep], ("text", "text"))


# --- a plant's control room ---------------------------------------------------------------------


def plant_dashboard(site: SiteView, plant: PlantView, ds: dm.DataSourceRef) -> GeneratedDashboard:
    b = _Builder(uid_for("rw-plant", plant.id), f"{plant.name} 中控室 — Control room {plant.id}", ds,
                 f"{plant.enterprise_name} · {q.INDUSTRY_ZH.get(plant.industry, plant.industry)} {plant.industry}。"
                 "由 riskwatch 根据登记信息和规则清单生成，请勿手工修改 (generated; do not edit by hand).")
    titles = _titles_table(site.rule_titles, plant.rule_ids)
    b.d.link(db.DashboardLink("测点详情 Point detail").url(f"/d/{POINT_UID}?var-plant={quote(plant.id)}")
             .keep_time(True).icon("info"))
    b.d.link(db.DashboardLink("总览 Bureau overview").url(f"/d/{BUREAU_UID}").keep_time(True).icon("dashboard"))

    alarm_cols = ("时间 since", "级别 severity", "状态 state", "报警 alarm", "位号 tag", "测点 point", "值 value",
                  "标记 flags", "说明 reason")
    b.panel(_add_query(table.Panel().title("当前报警 Active alarms").no_value("无报警 no active alarms")
                       .override_by_name("级别 severity", [
                           dm.DynamicConfigValue("mappings", _severity_mappings()),
                           dm.DynamicConfigValue("custom.cellOptions", {"type": "color-background"})]),
                       b, q.plant_active_alarms(plant.id, titles), "table", columns=alarm_cols), 16, 8)
    online: list[dm.ValueMapping] = [dm.ValueMap({
        "1": dm.ValueMappingResult(text="在线 online", color="green", index=0),
        "0": dm.ValueMappingResult(text="离线 offline", color="red", index=1)})]
    b.panel(_add_query(table.Panel().title("网关 Gateways")
                       .override_by_name("在线 online", [dm.DynamicConfigValue("mappings", online),
                                                         dm.DynamicConfigValue("custom.cellOptions",
                                                                               {"type": "color-background"})]),
                       b, q.plant_gateways(plant.id, site.gateway_silent_s), "table",
                       columns=("网关 gateway", "名称 name", "在线 online", "最后通信 last seen",
                                "状态上报 status at")), 8, 8)
    for dev in plant.devices:
        if not dev.points:
            continue
        b.row(f"{dev.name} {dev.code} ({dev.kind})")
        for pt in dev.points:
            sql = q.point_series(str(pt.id), pt.is_state)
            link = f"/d/{POINT_UID}?var-plant={quote(plant.id)}&var-point={pt.id}&${{__url_time_range}}"
            b.panel(_value_panel(pt, link).with_target(b.query(sql)), 8, 7)
    b.annotation("报警 Alarm activated", q.alarm_annotations(plant.id, "activate", titles), "red")
    b.annotation("恢复 Alarm cleared", q.alarm_annotations(plant.id, "clear", titles), "green")
    return b.done()


# --- the bureau ---------------------------------------------------------------------------------


def bureau_dashboard(site: SiteView, ds: dm.DataSourceRef) -> GeneratedDashboard:
    b = _Builder(BUREAU_UID, "县工信局总览 — Bureau overview", ds,
                 "重大事故隐患候选、报警、网关在线率、死信。由 riskwatch 生成 (generated; do not edit by hand).")
    b.d.time("now-7d", "now").refresh("1m")
    for p in site.plants:
        b.d.link(db.DashboardLink(f"{p.name} 中控室").url(f"/d/{uid_for('rw-plant', p.id)}").keep_time(True))

    def big(title: str, unit: str) -> stat.Panel:
        return (stat.Panel().title(title).unit(unit)
                .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
                .color_mode(cm.BigValueColorMode.BACKGROUND).graph_mode(cm.BigValueGraphMode.NONE))

    b.panel(_add_query(big("重大隐患（待判定 / 未销号） Hazards: candidates / open confirmed", "none")
                       .thresholds(_thresholds([dm.Threshold(None, "green"), dm.Threshold(1, "red")])),
                       b, q.open_hazards_total()), 6, 5)
    b.panel(_add_query(big("网关在线率 Gateway online rate", "percent").decimals(1).min(0).max(100)
                       .thresholds(_thresholds([dm.Threshold(None, "red"), dm.Threshold(90, "orange"),
                                                dm.Threshold(99.5, "green")])),
                       b, q.gateway_online_rate(site.gateway_silent_s)), 6, 5)
    b.panel(_add_query(table.Panel().title("当前报警（按级别） Active alarms by severity"), b,
                       q.active_alarms_by_severity(), "table", columns=("级别 severity", "报警 alarms")), 12, 5)
    b.panel(_add_query(table.Panel().title("重大隐患（按行业、企业） Hazards by industry and enterprise"),
                       b, q.open_hazards_by_enterprise(), "table",
                       columns=("行业 industry", "企业 enterprise", "待判定 candidates", "未销号 open confirmed",
                                "最早 oldest")),
            12, 8)
    b.panel(_add_query(table.Panel().title("未销号隐患 Open hazards"), b, q.open_hazards_list(), "table",
                       columns=("发现 detected", "企业 enterprise", "厂区 plant", "隐患 hazard", "依据 basis",
                                "状态 status")), 12, 8)
    b.panel(_add_query(table.Panel().title("逾期未整改 Overdue rectifications").no_value("无逾期 none overdue"), b,
                       q.overdue_hazards(), "table",
                       columns=("企业 enterprise", "隐患 hazard", "整改期限 deadline", "逾期天数 days overdue",
                                "挂牌督办 supervision")), 12, 8)
    b.panel(_add_query(timeseries.Panel().title("每小时报警数（按行业） Alarms per hour by industry")
                       .draw_style(cm.GraphDrawStyle.BARS).fill_opacity(80)
                       .stacking(cb.StackingConfig().mode(cm.StackingMode.NORMAL)).unit("short").decimals(0),
                       b, q.alarms_per_hour()), 12, 8)
    b.panel(_add_query(timeseries.Panel().title("每小时死信（按原因） Dead letters per hour by reason")
                       .draw_style(cm.GraphDrawStyle.BARS).fill_opacity(80)
                       .stacking(cb.StackingConfig().mode(cm.StackingMode.NORMAL)).unit("short").decimals(0),
                       b, q.dead_letters_per_hour()), 12, 8)
    b.panel(_add_query(table.Panel().title("离线网关 Gateways offline").no_value("全部在线 all online"), b,
                       q.gateways_offline(site.gateway_silent_s), "table",
                       columns=("企业 enterprise", "厂区 plant", "网关 gateway", "名称 name", "最后通信 last seen",
                                "原因 why")), 12, 8)
    b.panel(_add_query(table.Panel().title("最近死信 Recent dead letters"), b, q.dead_letters_recent(), "table",
                       columns=("接收 received", "网关 gateway", "原因 reason", "详情 detail", "主题 topic")), 12, 8)
    _alarm_health_row(b, site)
    return b.done()


def _alarm_health_row(b: _Builder, site: SiteView) -> None:
    """Alarm-system health per operator position (ISA-18.2 / EEMUA 191), the figures of hazards.records.health.

    Rate bands drawn on the chart: EEMUA 191's 1 per 10 minutes (a long-term average under it is very likely
    acceptable) and ISA-18.2's flood, more than 10 in 10 minutes."""
    b.row("报警系统健康 Alarm-system health (ISA-18.2 / EEMUA 191)")
    bands = _thresholds([dm.Threshold(None, "green"), dm.Threshold(q.ACCEPTABLE_PER_10MIN, "orange"),
                         dm.Threshold(q.FLOOD_ABOVE, "red")])
    per_10min = timeseries.Panel().title("每10分钟报警数（按操作岗位） Alarms per 10 minutes by operator position")
    b.panel(_add_query(per_10min
                       .description("EEMUA 191：长期平均每10分钟少于1条很可能可接受；每10分钟超过10条为报警泛滥"
                                    " (under 1 per 10 min very likely acceptable; more than 10 per 10 min is a flood)."
                                    " 时间按整10分钟对齐 (clock-aligned 10-minute intervals).")
                       .draw_style(cm.GraphDrawStyle.BARS).fill_opacity(60).unit("short").decimals(0).min(0)
                       .thresholds(bands)
                       .thresholds_style(cb.GraphThresholdsStyleConfig().mode(cm.GraphTresholdsStyleMode.DASHED)),
                       b, q.alarms_per_10min_by_position()), 24, 9)
    flood_pct = "洪水时间占比 % time in flood"
    b.panel(_add_query(bargauge.Panel().title("报警泛滥时间占比（按岗位） % of time in flood by position")
                       .description("所选时间范围内报警数超过10条的10分钟区间占比；ISA-18.2 目标 < 1 %"
                                    " (share of 10-minute intervals with more than 10 alarms; target under ~1 %).")
                       .unit("percent").decimals(1).min(0).max(100)
                       .thresholds(_thresholds([dm.Threshold(None, "green"), dm.Threshold(1, "orange"),
                                                dm.Threshold(5, "red")]))
                       .reduce_options(cb.ReduceDataOptions().values(True).calcs([]).fields(flood_pct))
                       .orientation(cm.VizOrientation.HORIZONTAL).display_mode(cm.BarGaugeDisplayMode.BASIC),
                       b, q.time_in_flood_by_position(), "table",
                       columns=("岗位 position", flood_pct, "洪水分钟 flood minutes")), 8, 8)
    b.panel(_add_query(stat.Panel().title("长期报警（持续 > 24 小时，按岗位） Standing alarms (active > 24 h)")
                       .description("时间范围结束时仍处于报警且已持续超过24小时 (active at the end of the range for"
                                    " more than 24 hours).")
                       .unit("none").decimals(0)
                       .thresholds(_thresholds([dm.Threshold(None, "green"), dm.Threshold(1, "orange"),
                                                dm.Threshold(5, "red")]))
                       .reduce_options(cb.ReduceDataOptions().values(True).calcs([]).fields("长期报警 standing > 24 h"))
                       .color_mode(cm.BigValueColorMode.BACKGROUND).graph_mode(cm.BigValueGraphMode.NONE),
                       b, q.standing_alarms_by_position(), "table",
                       columns=("岗位 position", "长期报警 standing > 24 h")), 6, 8)
    b.panel(_add_query(table.Panel().title("前10位频发报警（按岗位） Top-10 bad actors by position")
                       .description("ISA-18.2：前10位报警占比宜在 1 %–5 % 以内 (the top 10 should make up ~1-5 %"
                                    " of all alarms at most).")
                       .no_value("无报警 no alarms")
                       .override_by_name("占比 share %", [dm.DynamicConfigValue("unit", "percent"),
                                                          dm.DynamicConfigValue("decimals", 1)]),
                       b, q.bad_actors_by_position(_titles_table(site.rule_titles)), "table",
                       columns=("岗位 position", "排名 rank", "报警 alarm", "规则 rule", "对象 subject", "次数 alarms",
                                "占比 share %")), 10, 8)


# --- one point ----------------------------------------------------------------------------------


def point_dashboard(site: SiteView, ds: dm.DataSourceRef) -> GeneratedDashboard:
    b = _Builder(POINT_UID, "测点详情 — Point detail", ds,
                 "单个测点：趋势、规则设定值、数据完整性、报警记录。"
                 "由 riskwatch 生成 (generated; do not edit by hand).")
    b.d.time("now-24h", "now")
    plant = b.variable("plant", "厂区 plant", q.plant_options())
    point = b.variable("point", "测点 point", q.point_options())
    b.d.variables([plant, point])
    titles = _titles_table(site.rule_titles)
    limits = [(pt.id, f"{lim.rule_id} {'≥' if lim.side == 'hi' else '≤'} {lim.value:g}", lim.value)
              for pt in site.points() for lim in pt.limits]
    pid = "'$point'::int"
    trend = (timeseries.Panel().title("趋势与设定值 Trend and setpoints").line_width(1).fill_opacity(0)
             .legend(cb.VizLegendOptions().display_mode(cm.LegendDisplayMode.TABLE)
                     .placement(cm.LegendPlacement.BOTTOM).show_legend(True).calcs(["lastNotNull", "min", "max"]))
             .override_by_query("B", [dm.DynamicConfigValue("custom.lineStyle", {"fill": "dash", "dash": [10, 10]}),
                                      dm.DynamicConfigValue("color", {"mode": "fixed", "fixedColor": "red"})]))
    trend.with_target(b.query(q.point_series(pid, False), ref="A"))
    trend.with_target(b.query(q.setpoint_lines(pid, limits), ref="B"))
    b.panel(trend, 18, 10)
    b.panel(_add_query(stat.Panel().title("最新值 Latest value")
                       .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
                       .graph_mode(cm.BigValueGraphMode.NONE), b, q.point_latest(pid)), 6, 5)
    b.panel(_add_query(timeseries.Panel().title("每分钟读数 Readings per minute").unit("short").min(0)
                       .draw_style(cm.GraphDrawStyle.BARS).fill_opacity(60), b, q.point_rate(pid)), 6, 5)
    b.panel(_add_query(table.Panel().title("测点信息 Point"), b, q.point_info(pid), "table",
                       columns=("位号 tag", "名称 name", "量 quantity", "单位 unit", "设备 device", "网关 gateway",
                                "周期 interval s", "必报 required")), 24, 4)
    b.panel(_add_query(table.Panel().title("报警记录 Alarm history"), b, q.point_alarm_history(pid, titles), "table",
                       columns=("时间 time", "事件 event", "规则 rule", "状态 state", "值 value", "操作人 actor",
                                "说明 reason")), 24, 8)
    return b.done()


def build_all(site: SiteView, datasource_uid: str = DATASOURCE_UID) -> list[GeneratedDashboard]:
    """Every dashboard: the bureau overview, point detail, then one per plant."""
    ds = dm.DataSourceRef(PLUGIN_ID, datasource_uid)
    return [bureau_dashboard(site, ds), point_dashboard(site, ds),
            *(plant_dashboard(site, p, ds) for p in site.plants)]
