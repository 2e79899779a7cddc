"""`riskwatch demo`: private services, the sample site, collector + simulators, a live summary.

The incident's notifications go out for real, through the dispatcher and its SMTP and webhook
channels, to a local SMTP sink and webhook receiver (`simulators.fakes.sinks`); the demo's routing file
is left in the data dir to read and copy. The parts are composed like `serve` composes them
(api.run.compose): one clock, the shipped catalog loaded once, titles handed to alerting.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from rich.console import Console
from rich.live import Live
from rich.table import Table

from alerting import backlog
from alerting.ack import link_secret
from alerting.config import AlertingConfig, load_config
from alerting.dispatcher import Dispatcher
from api.run import compose, simcreds
from api.run.context import RunContext
from api.run.demo_logins import ensure_logins
from core import registry
from core.clock import Clock
from core.db import migrate
from core.mqtt import configure
from core.services import LocalServices
from core.settings import MqttUrl
from hazards import store as hazard_store
from hazards.intake import open_or_attach
from hazards.model import STATUS_ZH, Status
from ingest import counts
from rules import overview
from rules.actions import list_alarms
from simulators.fakes.sinks import SmtpSink, WebhookReceiver
from simulators.gateway import tls_context
from simulators.run import SimProgress, default_site_path, load_site, simulate
from simulators.scenarios import SCENARIOS

__all__ = ["run_demo", "show_sensor_tickets"]


#: The demo's routing. Times are short so the incident is notified within the run; the comments say
#: what a county would use.
DEMO_ROUTING = """\
# riskwatch 演示路由 demo routing. To use it for real, copy it to alerting.yaml in the data dir (or
# point RISKWATCH_ALERTING at it) and edit the channels (SMTP relay, webhook URL and secret) and people.
version: 1
timezone: Asia/Shanghai
defaults:
  group_by: [enterprise, plant, rule]  # one thread per problem at a plant
  group_wait: 3s                       # production: 30s, to collect what fires together
  group_interval: 10s                  # production: 5m
  repeat_interval: 30m                 # reminders while unacknowledged
delivery: {{max_attempts: 8, backoff_initial: 2s, backoff_max: 5m, ack_link_ttl: 24h}}
channels:
  email: {{type: smtp, host: 127.0.0.1, port: {smtp_port}, sender: "县工信局风险预警 <riskwatch@example.gov.cn>"}}
  hook: {{type: webhook, url: "{webhook_url}", secret: "{webhook_secret}"}}
people:
  zhang: {{name: 值班员张伟, email: zhang.wei@example.gov.cn, phone: "13900000001"}}
  li: {{name: 值班员李娜, email: li.na@example.gov.cn, phone: "13900000002"}}
  chen: {{name: 安全科陈科长, email: chen.ke@example.gov.cn, phone: "13900000003"}}
rosters:
  bureau-duty:
    shifts:
      - {{from: "08:00", to: "20:00", people: [zhang]}}
      - {{from: "20:00", to: "08:00", people: [li]}}
    handover: 15m
    fallback: [chen]
receivers:
  bureau-duty: {{to: [{{roster: bureau-duty}}], via: [email, hook]}}
  section-chief: {{to: [{{person: chen}}], via: [email]}}
  # 企业主要负责人和实际控制人 (from the registry): required for confirmed major hazards.
  enterprise-leaders: {{to: [{{enterprise: principal}}, {{enterprise: controller}}], via: [email]}}
routes:
  receiver: bureau-duty
  routes:
    - match: {{kind: hazard, event: [confirmed, supervised]}}
      receiver: [bureau-duty, enterprise-leaders]
      group_by: [hazard]
      group_wait: 0s
    - match: {{kind: hazard}}
      group_by: [hazard]
      group_wait: 0s
    - match: {{kind: alarm, severity: urgent}}
      escalation:
        - {{after: 15m, receiver: section-chief}}  # still unacknowledged: the section chief too
"""


def _counts(conn: psycopg.Connection) -> tuple[int, int, int, int, int]:
    """(readings stored, dead letters, unmapped readings, active alarms, hazard candidates), in one snapshot."""
    with conn.transaction():
        st, up = counts.stored(conn), overview.raised(conn)
    conn.commit()
    return st.readings, st.dead_letters, st.unmapped, up.active_alarms, up.candidates


def _owed(conn: psycopg.Connection, by: float) -> int:
    """What the dispatcher still has to do by `by` (epoch s)."""
    n = backlog.owed(conn, by)
    conn.commit()
    return n


def _table(elapsed: float, duration: float, sent: int, stored: int, rate: float, dead: int, unmapped: int,
           alarms: int = 0, candidates: int = 0, notes: tuple[int, int, int, int] = (0, 0, 0, 0)) -> Table:
    t = Table(title="riskwatch 演示 demo — 实时概况 live summary", title_justify="left")
    t.add_column("指标 metric")
    t.add_column("数值 value", justify="right")
    t.add_row("运行时间 elapsed", f"{elapsed:5.0f} / {duration:.0f} s")
    t.add_row("已发送读数 readings sent", f"{sent:,}")
    t.add_row("已入库读数 rows stored", f"{stored:,}")
    t.add_row("入库速率 readings/s", f"{rate:,.0f}")
    t.add_row("死信 dead letters", f"{dead:,}")
    t.add_row("未登记测点 unmapped readings", f"{unmapped:,}")
    t.add_row("活动报警 active alarms", f"{alarms:,}")
    t.add_row("重大隐患候选 hazard candidates", f"{candidates:,}")
    delivered, failed, mails, hooks = notes
    t.add_row("已发通知 notifications sent", f"{delivered:,}" + (f" ({failed:,} 次失败 failed)" if failed else ""))
    t.add_row("收到邮件 e-mails received", f"{mails:,}")
    t.add_row("收到 Webhook webhook calls received", f"{hooks:,}")
    return t


@dataclass
class _Alerting:
    """The demo's notification path: local sinks, its routing file, and a dispatcher thread."""

    smtp: SmtpSink
    hook: WebhookReceiver
    path: Path
    cfg: AlertingConfig
    skipped: int
    dispatcher: Dispatcher
    thread: threading.Thread

    @classmethod
    def open(cls, db_url: str, data_dir: Path, configured_secret: str | None, clock: Clock,
             titles: compose.Titles) -> _Alerting:
        """Start the sinks, write the routing file for their ports, skip what earlier runs left in the outbox."""
        smtp = SmtpSink().start()
        secret = secrets.token_urlsafe(16)
        hook = WebhookReceiver(secret=secret).start()
        path = data_dir / "demo-alerting.yaml"
        path.write_text(DEMO_ROUTING.format(smtp_port=smtp.port, webhook_url=hook.url, webhook_secret=secret),
                        encoding="utf-8")
        cfg = load_config(path)
        skipped = _skip_earlier(db_url)
        dispatcher = compose.build_dispatcher(db_url, cfg, clock, titles, public_url="http://127.0.0.1:8080",
                                              link_secret=link_secret(configured_secret, data_dir))
        thread = threading.Thread(target=dispatcher.run, name="dispatcher", daemon=True)
        return cls(smtp, hook, path, cfg, skipped, dispatcher, thread)

    def start(self) -> None:
        self.thread.start()

    def counts(self) -> tuple[int, int, int, int]:
        st = self.dispatcher.stats
        return st.sent, st.failed, len(self.smtp), len(self.hook)

    def stop(self) -> None:
        self.dispatcher.stop()
        self.thread.join(30)
        self.dispatcher.close()
        self.smtp.stop()
        self.hook.stop()


def _skip_earlier(db_url: str) -> int:
    """Outbox rows left by earlier runs on this data dir are marked routed: the demo notifies its own incident."""
    with psycopg.connect(db_url) as conn:
        return backlog.skip_unrouted(conn)


def run_demo(c: RunContext, console: Console, *, duration: float, rate: float, batch: int,
             stop: threading.Event) -> None:
    console.rule("[bold]riskwatch 演示 demo")
    services = c.services
    services.up()
    console.print(f"1. 私有服务 private services\n   PostgreSQL  {services.db_url}\n   Mosquitto   "
                  f"mqtts://127.0.0.1:{services.state.mqtt_port} (TLS, CA {services.mqtt.cafile})")
    migrate(services.db_url)
    site_path = default_site_path()
    site = load_site(site_path)
    with psycopg.connect(services.db_url) as conn:
        res = registry.upsert_site(conn, site)
        creds, _ = simcreds.ensure(conn, c.settings.data_dir, [g.id for _, g in site.gateways()])
        c.sync_broker(conn)
    console.print(f"2. 登记 registry: {site_path.name} — {res.enterprises} 家企业 enterprises, {res.plants} 个厂区 "
                  f"plants, {res.gateways} 个网关 gateways, {res.points} 个测点 points")
    for e in site.enterprises:
        for p in e.plants:
            console.print(f"   · {e.name} / {p.name} ({p.industry})")

    settings = c.resolved()
    clock = compose.build_clock()
    catalog = compose.load_rule_catalog()
    alerting = _Alerting.open(services.db_url, c.settings.data_dir, settings.link_secret, clock,
                              compose.rule_titles(catalog))
    console.print(f"3. 预警通知 alerting: 路由 routing {alerting.path}\n"
                  f"   本地邮件 SMTP sink 127.0.0.1:{alerting.smtp.port}, 本地 Webhook receiver {alerting.hook.url}")
    if alerting.skipped:
        console.print(f"   {alerting.skipped} 条此前运行遗留的待发事件不再通知 outbox rows from earlier runs skipped")
    alerting.start()
    engine = compose.build_engine(catalog, clock, on_candidate=open_or_attach)
    collector = compose.build_collector(settings, clock, engine, db_url=services.db_url, mqtt=c.mqtt)
    connected = threading.Event()
    col_thread = threading.Thread(target=collector.run, kwargs={"ready": connected.set}, name="collector",
                                  daemon=True)
    col_thread.start()
    connected.wait(10)
    time.sleep(0.5)  # subscription in place before the first publish

    progress: dict[str, SimProgress] = {}
    sim_result: dict[str, object] = {}
    # The incident: cooling water leaking from 1# induction furnace while it stays powered
    # (判定标准 7(4)), moved to the middle of the run.
    base = SCENARIOS["cooling_water_leak"]
    first = min(f.at_s for f in base.faults if f.at_s > 0)
    incident = base.shifted(max(5.0, duration * 0.4) - first)
    leak_at = min(f.at_s for f in incident.faults if f.at_s > 0)

    def _sim() -> None:
        try:
            sim_result["result"] = simulate(site, "127.0.0.1", services.state.mqtt_port, creds, duration_s=duration,
                                            rate_hz=rate, batch=batch,
                                            log_path=c.settings.data_dir / "demo-sent.csv", stop=stop,
                                            progress=lambda p: progress.__setitem__("p", p), scenario=incident,
                                            tls=tls_context(str(services.mqtt.cafile)))
        except Exception as exc:  # shown below; the demo still shuts down cleanly
            sim_result["error"] = exc

    console.print(f"4. 采集与仿真 collector + rule engine + simulators: {duration:.0f} s at {rate:g} Hz per point "
                  "(Ctrl-C ends early)")
    console.print(f"   事故演练 incident at +{leak_at:.0f} s: {incident.title.zh} {incident.title.en} "
                  "(1#中频炉 FT-602 回水流量下降，炉子仍送电 / outlet flow drops while the furnace stays powered)")
    sim_thread = threading.Thread(target=_sim, name="simulator", daemon=True)
    with psycopg.connect(services.db_url) as conn:
        base_stored, base_dead, base_unmapped, _, base_cand = _counts(conn)
        t0 = time.monotonic()
        t0_wall = time.time() - 1.0
        # Before the simulator connects: the examples go out under a simulated gateway's account, and the broker
        # binds client ids to usernames, so a second connection of that gateway would take over the simulator's.
        _send_bad_examples(services, creds)
        sim_thread.start()
        last = (t0, base_stored)
        rate_now = 0.0
        with Live(console=console, refresh_per_second=2) as live:
            while sim_thread.is_alive():
                elapsed = time.monotonic() - t0
                stored, dead, unmapped, active, cand = _counts(conn)
                now = time.monotonic()
                if now - last[0] >= 1.0:
                    rate_now = (stored - last[1]) / (now - last[0])
                    last = (now, stored)
                prog = progress.get("p")
                live.update(_table(elapsed, duration, prog.readings_sent if prog else 0, stored - base_stored, rate_now,
                                   dead - base_dead, unmapped - base_unmapped, active, cand - base_cand,
                                   alerting.counts()))
                sim_thread.join(0.5)
            # let the collector drain what the broker still holds for it, and the dispatcher send what
            # falls due meanwhile (not the reminders and later group notices it has scheduled)
            result = sim_result.get("result")
            sent = getattr(result, "readings_sent", 0)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                stored, dead, unmapped, active, cand = _counts(conn)
                if stored - base_stored >= sent and not _owed(conn, time.time() + deadline - time.monotonic()):
                    break
                time.sleep(0.3)
            live.update(_table(time.monotonic() - t0, duration, sent, stored - base_stored, rate_now,
                               dead - base_dead, unmapped - base_unmapped, active, cand - base_cand,
                               alerting.counts()))
    collector.stop()
    col_thread.join(30)
    alerting.stop()
    if "error" in sim_result:
        console.print(f"[red]simulator failed: {sim_result['error']}[/]")
    console.print()
    console.print(f"5. 完成 done: {stored - base_stored:,} 条读数入库 readings stored of {sent:,} sent; "
                  f"{dead - base_dead} 条死信 dead letters (malformed examples sent on purpose)")
    _show_latest(services.db_url, console)
    _show_alarms(services.db_url, console, since=t0_wall)
    show_sensor_tickets(console, services.db_url, since=t0_wall)
    _show_notices(console, alerting)
    _show_console_and_stops(console, services.db_url, c.settings.data_dir, site, catalog, incident_gateway="gw-fdy-01")
    console.print("数据保留 data left in place — look at it with:")
    console.print(f"   psql '{services.db_url}'")
    console.print("   SELECT reason, detail FROM dead_letters ORDER BY id DESC LIMIT 5;")
    console.print("   .venv/bin/riskwatch alerting notifications   # the notifications and their delivery")
    console.print("   .venv/bin/riskwatch services down   # when finished")


def _show_console_and_stops(console: Console, db_url: str, data_dir: Path, site: Any, catalog: Any, *,
                            incident_gateway: str) -> None:
    """Where to walk the incident in a browser, with logins; and what follows the simulated plants' silence."""
    plant_of = {g.id: (p, e) for e in site.enterprises for p in e.plants for g in p.gateways}
    _plant, ent = plant_of[incident_gateway]
    with psycopg.connect(db_url) as conn:
        logins = ensure_logins(conn, data_dir, ent.id)
    console.print("控制台 web console: http://127.0.0.1:8080/console — `riskwatch serve` (or `riskwatch demo --serve`)")
    for lg in logins:
        who = f"{lg.role_zh} {lg.role}" + (f" of {lg.enterprise_id}" if lg.enterprise_id else "")
        console.print(f"   {lg.username:<22} {lg.password:<18} {who}")
    console.print(f"   (saved in {data_dir / 'demo-logins.json'}, mode 0600)")
    required = [(pt.interval_s, pt.tag) for _, _, _, pt in site.points() if pt.required]
    rule = catalog.rules.get("common.required.stale")
    if required and rule is not None:
        _, stale = rule
        after = max(max(stale.intervals * iv, stale.min_s) for iv, _ in required)
        console.print("[yellow]模拟厂区已停止上报 the simulated plants stopped reporting.[/] "
                      f"若不报备停产（停产报备），下次运行 `riskwatch serve`/`collect` 后约 {after:.0f} 秒，"
                      f"{len(required)} 个必设测点将触发"
                      f"「{stale.title.zh}」并各自打开重大事故隐患候选。 If nobody files a stop, about {after:.0f} s "
                      f"after the next `serve`/`collect` the {len(required)} required points raise "
                      f"'{stale.title.en}', each opening a candidate major hazard: file a stop with "
                      "POST /api/v1/stops (or `riskwatch maintenance`).")


def _send_bad_examples(services: LocalServices, creds: dict[str, str]) -> None:
    """A malformed message and an unknown tag, to show the dead-letter path (over TLS, as a gateway would)."""
    gw = sorted(creds)[0]
    now = int(time.time() * 1000)
    url = MqttUrl.parse(services.mqtt.url(gw, creds[gw]))
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=gw, protocol=mqtt.MQTTv311)
    configure(client, url)
    try:
        client.connect(url.host, url.port)
        client.loop_start()
        infos = [
            client.publish(f"rw/v1/{gw}/telemetry", b'{"ts": 1, "readings": [', qos=1),
            client.publish(f"rw/v1/{gw}/telemetry", orjson.dumps(
                {"ts": now, "readings": [{"tag": "TT-999", "v": 1.5}, {"tag": "X", "v": "n/a"}]}), qos=1),
        ]
        for info in infos:
            info.wait_for_publish(5)
        client.disconnect()
        client.loop_stop()
    except (OSError, RuntimeError, ValueError):
        pass  # the demo goes on without them


def _show_latest(db_url: str, console: Console) -> None:
    with psycopg.connect(db_url) as conn:
        rows = counts.latest_readings(conn)
    t = Table(title="最新读数 latest readings", title_justify="left")
    for col in ("厂区 plant", "设备 device", "位号 tag", "测点 point", "值 value", "单位 unit"):
        t.add_column(col)
    for r in rows:
        t.add_row(r.plant, r.device, r.tag, r.point, f"{r.value:g}", r.unit)
    console.print(t)


def _show_alarms(db_url: str, console: Console, since: float) -> None:
    with psycopg.connect(db_url) as conn:
        alarms = [a for a in list_alarms(conn) if a.activated_at and a.activated_at.timestamp() >= since
                  and not a.rule_id.startswith("common.gateway")]
        cands = overview.candidates_since(conn, since)
    t = Table(title="本次演练触发的报警 alarms raised by the incident", title_justify="left")
    for col in ("级别 severity", "状态 state", "规则 rule", "位号 tag", "时间 time", "说明 reason"):
        t.add_column(col)
    for a in alarms:
        t.add_row(a.severity + (" ★" if a.candidate else ""), a.state, a.rule_id, a.tag or a.subject,
                  a.activated_at.strftime("%H:%M:%S") if a.activated_at else "", a.reason or "")
    console.print(t)
    t2 = Table(title="重大事故隐患候选（待局值班人员判定） candidate major hazards, for bureau staff to confirm",
               title_justify="left")
    for col in ("时间 time", "规则 rule", "隐患 hazard", "依据 basis", "厂区 plant"):
        t2.add_column(col)
    for cd in cands:
        t2.add_row(cd.detected_at.strftime("%H:%M:%S"), cd.rule_id, cd.title_zh, cd.basis, cd.plant)
    console.print(t2)


def _show_notices(console: Console, alerting: _Alerting, limit: int = 10) -> None:
    """What reached the local sinks, oldest first: time, channel, recipient, subject."""
    rows: list[tuple[float, str, str, str]] = []
    for m in alerting.smtp.mails:
        rows.append((m.received_at, "邮件 email", ", ".join(m.rcpt_tos), m.subject))
    for call in alerting.hook.calls:
        try:
            body: Any = call.json()
            who = ", ".join(r["name"] for r in body.get("recipients") or []) or str(body["data"]["receiver"])
            subject = str(body["subject"])
        except (ValueError, KeyError, TypeError):
            who, subject = "?", call.body[:60].decode(errors="replace")
        signed = " ✓签名 signed" if call.signed else " ✗未验签 bad signature"
        rows.append((call.received_at, "Webhook" + signed, who, subject))
    rows.sort()
    st = alerting.dispatcher.stats
    console.print(f"收到的通知 notices received by the local sinks: {len(alerting.smtp)} 封邮件 e-mails, "
                  f"{len(alerting.hook)} 次 Webhook calls ({st.sent} sent, {st.failed} failed attempts, "
                  f"{st.dead} dead)")
    for at, channel, who, subject in rows[:limit]:
        console.print(f"   {time.strftime('%H:%M:%S', time.localtime(at))}  {channel}  {who}  {subject}",
                      soft_wrap=True, markup=False, highlight=False)
    if len(rows) > limit:
        console.print(f"   … 另有 {len(rows) - limit} 条 and {len(rows) - limit} more")
    if not rows:
        console.print("   （无 none）")


def show_sensor_tickets(console_: Console, db_url: str, since: float) -> int:
    """For `riskwatch demo`: the tickets the rule engine opened since `since`, waiting for the bureau."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        rows, _ = hazard_store.list_tickets(conn, hazard_store.Filters(source=["sensor"], created_from=since), None,
                                            time.time(), limit=20, order="id")
    t = Table(title="重大事故隐患台账：自动登记的候选隐患（待局值班人员判定） "
                    "hazard ledger: candidate tickets opened by the incident", title_justify="left")
    for col in ("编号 #", "状态 status", "隐患 hazard", "依据 basis", "企业 enterprise", "次数 occurrences",
                "证据 evidence"):
        t.add_column(col, overflow="fold")  # the legal basis is the point: show it whole
    for r in rows:
        t.add_row(f"#{r.id}", f"{STATUS_ZH[Status(r.status)]} {r.status}", r.title, r.basis or "", r.enterprise_name,
                  str(r.occurrences), str(r.evidence_count))
    console_.print(t)
    if rows:
        first = rows[0].id
        console_.print(f"   判定与整改 judge and rectify: riskwatch hazards confirm {first} --comment … "
                       f"(or dismiss {first} --reason …), or POST /api/v1/hazards/{first}/confirm with body {{}} "
                       f"and a bureau token; riskwatch hazards show {first}")
    return len(rows)
