"""`riskwatch bench`: figures measured on private services, all in one run.

Parts (each prints medians and ratios, never pass/fail), in this order on the same services:
``db`` (binary COPY ceiling), ``grafana`` (panel queries, simulators.bench.grafana_panels), ``console`` (server
time per console page on a county-sized database, simulators.bench.console_pages), ``broker``
(QoS1 ceiling of single-reading messages, measured with Mosquitto's C clients), ``e2e`` (batched and
single-reading end to end), ``latency`` (breach -> alarm committed; every breach must be detected),
``alerting`` (breach -> webhook received, simulators.bench.alert_latency), ``edge`` (Modbus TCP -> edge
agent -> broker -> collector, simulators.plc.edge_throughput) and ``scale`` (batched end to end with 1, 2
and 3 lease-group collectors).

A part records a failed check (`Figures.failures`: a breach not detected, a reading not stored) instead of
raising, so the other parts still run; `riskwatch bench` prints the table, then the failures, and exits 1.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from core.services import COLLECTOR_USER, HEALTH_USER
from simulators.bench.alert_latency import add_figures, alert_latency
from simulators.bench.cclients import wipe_session
from simulators.bench.console_pages import run as console_run
from simulators.bench.console_pages import table as console_table
from simulators.bench.grafana_panels import run as grafana_run
from simulators.bench.harness import (
    BENCH_CATALOG,
    SCALE_COLLECTORS,
    Bench,
    Figures,
    _site,
    alarm_latency,
    broker_ceiling,
    db_ceiling,
    end_to_end,
    pct,
    scale_run,
    wait_caught_up,
)
from simulators.plc import edge_throughput

__all__ = ["PARTS", "run"]

#: Every part, in the order a run takes them.
PARTS = ("db", "grafana", "console", "broker", "e2e", "latency", "alerting", "edge", "scale")
#: Gateways of the scale part's site: 6 spread evenly over 1, 2 and 3 collectors.
SCALE_GATEWAYS = 6


def run(parts: list[str], quick: bool, progress: Callable[[str], None], *, duration: float | None = None,
        points: int | None = None, batch: int = 100, procs: int = 2,
        on_part: Callable[[int, str], None] | None = None, keep: bool = False) -> Figures:
    """Every part on the same private services, in one run, so ratios compare like with like.

    `on_part(done, name)` hears as each requested part starts how many are done (a progress bar's count)."""
    order = [p for p in PARTS if p in parts]

    def part(name: str) -> None:
        if on_part is not None and name in order:
            on_part(order.index(name), name)
    fig = Figures()
    dur = duration or (8.0 if quick else 30.0)
    n_points = points or (2_000 if quick else 100_000)
    with Bench(keep=keep) as bench:
        progress(f"scratch dir: {bench.dir}" + (" (kept: collector logs, broker log)" if keep else ""))
        db = e2e_b = e2e_1 = broker = None
        part("db")
        if "db" in parts:
            rows = 300_000 if quick else 2_000_000
            progress(f"db: binary COPY of {rows:,} rows")
            db, _ = db_ceiling(bench.services.db_url, rows, 20_000, 10_000)
            fig.add("db_copy_rows_per_s", "数据库上限 DB ceiling: binary COPY", db, "rows/s",
                    "median of batches of 20k rows")
        part("grafana")
        if "grafana" in parts:
            progress("grafana: 30 days of one 1 Hz point; panel queries from rollups and raw")
            g = grafana_run(bench.services.db_url, quick)
            fig.data.update(g)
            fig.add("grafana_30d_rollup_ms", "Grafana 30天面板 30-day panel (rollups) median",
                    g["grafana_30d_rollup_ms"], "ms", "target ≤ 50 ms")
            fig.add("grafana_24h_raw_ms", "Grafana 24小时面板 24-hour panel (raw) median",
                    g["grafana_24h_raw_ms"], "ms", "target ≤ 100 ms")
        part("console")
        if "console" in parts:
            progress("console: page times on a county-sized database (simulators.bench.console_pages)")
            mq = bench.services.mqtt
            c = console_run(bench.services.db_url, bench.dir, quick, progress, points=points,
                            env={"RISKWATCH_MQTT_URL": mq.url(COLLECTOR_USER),
                                 "RISKWATCH_MQTT_HEALTH_URL": mq.url(HEALTH_USER)})
            fig.data["console"] = c
            fig.data["console_table"] = console_table(c["pages"])
            fig.add("console_worst_p95_ms", f"控制台最慢页 console worst page p95: {c.get('worst_page', '-')}",
                    c.get("worst_p95_ms", float("nan")), "ms",
                    "target ≤ 300 ms: " + ("PASS" if c.get("pass") else "FAIL"))
            fig.add("console_seed_s", "控制台数据准备 console seeding", c["seed_s"], "s",
                    f"{c['rows_points']:,.0f} points, {c['rows_hazards']:,.0f} hazards, "
                    f"{c['rows_alarm_events']:,.0f} alarm events")
        if not {"broker", "e2e", "latency", "alerting", "edge", "scale"} & set(parts):
            if on_part is not None:
                on_part(len(order), "done")
            return fig
        gws = max(procs, 2) + 1
        site = _site(gateways=gws, points_per_gateway=max(1, n_points // gws))
        progress(f"loading a registry of {n_points:,} points")
        creds = bench.load(site)
        cat = bench.dir / "bench-catalog.yaml"
        cat.write_text(BENCH_CATALOG)
        # No session of the collector may hold rw/v1/# while the C clients measure the broker (it would queue every
        # message for it): a clean-session login drops one an earlier part left. The collector starts afterwards.
        wipe_session(bench.services.mqtt.url(COLLECTOR_USER))
        part("broker")
        if "broker" in parts:
            n_msgs = 20_000 if quick else int(dur * 5_000)
            for mode in ("prefilled", "live"):
                progress(f"broker ({mode}): {n_msgs:,} single-reading QoS1 messages, {procs} mosquitto_pub -l, "
                         "one mosquitto_sub drain")
                bc = broker_ceiling(bench, creds, site, messages=n_msgs, procs=procs, mode=mode, progress=progress)
                fig.data[f"broker_{mode}_publish_msgs_per_s"] = bc.publish_rate
                fig.data[f"broker_{mode}_received"] = bc.drain.received
                note = (f"{bc.drain.received:,}/{bc.messages:,} received" + (" ✓" if bc.complete else " ✗ LOST")
                        + f"; {procs} mosquitto_pub -l → 1 mosquitto_sub, TLS")
                if mode == "prefilled":
                    broker = bc.drain.rate
                    fig.add("broker_msgs_per_s", "消息代理上限 broker ceiling (C clients): queued session → drain",
                            broker, "msg/s", note + "; the ratio's denominator")
                else:
                    fig.add("broker_live_msgs_per_s", "  broker, publish and drain at once (C clients)",
                            bc.drain.rate, "msg/s", note)
                if not bc.complete:
                    fig.failures.append(f"broker ({mode}): the drain received {bc.drain.received:,} of "
                                        f"{bc.messages:,} acknowledged messages")
        if {"e2e", "latency", "alerting", "edge"} & set(parts):  # the scale part starts collectors of its own
            t_load = time.monotonic()
            bench.start_collector(cat)  # its persistent session (rw/v1/#) exists from here: e2e relies on it
            fig.data["collector_start_s"] = time.monotonic() - t_load
        part("e2e")
        if "e2e" in parts:
            for b in (batch, 1):
                n = int(dur * (100_000 if b > 1 else 10_000))
                progress(f"e2e: {n:,} readings, {b} per message, {procs} publisher processes, rules on")
                r = end_to_end(bench, creds, site, cat, batch=b, readings=n, procs=procs, progress=progress)
                key = "batched" if b > 1 else "single"
                fig.add(f"e2e_{key}_readings_per_s", f"端到端 end to end, {b}/msg: stored", r.rate, "readings/s",
                        f"sent {r.sent:,}, stored {r.stored:,}" + (" ✓" if r.stored == r.sent else " ✗ LOST"))
                fig.add(f"e2e_{key}_collector_cpu", f"  collector CPU ({key})", r.cpu * 100, "% of a core", "")
                fig.data[f"e2e_{key}_sent"] = r.sent
                fig.data[f"e2e_{key}_stored"] = r.stored
                fig.data[f"e2e_{key}_lost"] = r.sent - r.stored
                if b > 1:
                    e2e_b = r.rate
                else:
                    e2e_1 = r.rate
                fig.data["collector_peak_rss_mb"] = r.rss / 2**20
            fig.add("collector_peak_rss_mb", f"采集进程峰值内存 collector peak RSS ({n_points:,} points)",
                    fig.data["collector_peak_rss_mb"], "MB", "target ≤ 300 MB at 100k points")
        part("latency")
        if "latency" in parts:
            load = (e2e_b / 2) if e2e_b else (2_000.0 if quick else 5_000.0)
            n = 60 if quick else 300
            progress(f"latency: {n} breaches under {load:,.0f} readings/s background load")
            lr = alarm_latency(bench, creds, site, load_rate=load, breaches=n, interval_s=0.25, progress=progress)
            acc = lr.accounting
            lat = acc.latencies
            fig.add("alarm_latency_p50_ms", "越限→报警提交 breach→alarm committed p50", pct(lat, 50) * 1000, "ms",
                    f"{len(lat)}/{n} breaches at {load:,.0f} readings/s" + (" (half the e2e rate)" if e2e_b else "")
                    + (" ✓" if not acc.missing else " ✗ MISSED"))
            fig.add("alarm_latency_p99_ms", "越限→报警提交 breach→alarm committed p99", pct(lat, 99) * 1000, "ms",
                    "target ≤ 300 ms")
            fig.data["alarm_latency_samples"] = len(lat)
            fig.data["alarm_latency_published"] = len(lr.published)
            fig.data["alarm_latency_missing"] = lr.missing_lines()
            fig.data["alarm_latency_unexpected"] = len(acc.unexpected)
            # Heard only after the last breach's own window: what the part missed before it waited for them.
            fig.data["alarm_latency_late"] = lr.late
            if acc.missing:
                fig.failures.append(f"latency: {len(acc.missing)} of {n} breaches not detected: "
                                    + "; ".join(lr.missing_lines()))
            # The load may have outrun the collector (its session queued the rest): let it catch up before the next
            # part, and say how far behind it was.
            fig.data["latency_backlog_s"] = wait_caught_up(bench.services.db_url)
            progress(f"latency: the collector caught up {fig.data['latency_backlog_s']:.1f} s after the last breach")
        part("alerting")
        if "alerting" in parts:
            n, load = (50 if quick else 200), 2_000.0
            progress(f"alerting: {n} breaches → signed webhooks under {load:,.0f} readings/s background load")
            ar = alert_latency(bench, creds, site, load_rate=load, breaches=n, interval_s=0.2,
                                              progress=progress)
            add_figures(fig, ar, breaches=n, load=load)
        part("edge")
        if "edge" in parts:
            # The parts before may have left the collector a backlog (its session queued it): measured on top
            # of it, the agent's readings would wait behind the backlog and the window would count none.
            fig.data["edge_backlog_s"] = wait_caught_up(bench.services.db_url)
            gw, n_tags, poll = site.gateways()[0][1].id, (50 if quick else 200), 0.05
            progress(f"edge: {n_tags} Modbus registers polled every {poll * 1000:g} ms by the edge agent, {dur:g} s")
            url = f"mqtts://{gw}@127.0.0.1:{bench.services.state.mqtt_port}?cafile={bench.services.mqtt.cafile}"
            ed = edge_throughput(gateway=gw, password=creds[gw], broker_url=url, db_url=bench.services.db_url,
                                 tags=[f"T{k:05d}" for k in range(n_tags)], workdir=bench.dir / "edge",
                                 duration_s=dur, poll_s=poll)
            fig.data["edge"] = ed
            if ed["readings"] <= 0:
                fig.failures.append(f"edge: nothing the agent polled reached the database in {dur:g} s "
                                    f"({ed['buffered_at_end']:,.0f} readings still in its buffer)")
            fig.add("edge_readings_per_s", "边缘网关 Modbus → edge agent → collector: stored", ed["readings_per_s"],
                    "readings/s", f"{n_tags} registers every {poll * 1000:g} ms offered "
                                  f"{n_tags / poll:,.0f}/s; one Modbus request per register")
        part("scale")
        if "scale" in parts:
            n = int(dur * (40_000 if quick else 60_000))
            sgws = max(SCALE_GATEWAYS, gws)
            progress(f"scale: {sgws} gateways; {n:,} readings per run, {batch}/msg, with "
                     + ", ".join(map(str, SCALE_COLLECTORS)) + " collectors")
            s_site = _site(gateways=sgws, points_per_gateway=max(1, n_points // gws))  # adds gateways to the site
            s_creds = bench.load(s_site)
            rates: dict[int, float] = {}
            for k in SCALE_COLLECTORS:
                sr = scale_run(bench, s_creds, s_site, cat, collectors=k, readings=n, batch=batch,
                               progress=progress)
                rates[k] = sr.rate
                busy = " · ".join(f"{name.replace('riskwatch-collector', 'c')} {c:.2f}"
                                  for name, c in sr.cores.items())
                fig.add(f"scale_{k}_readings_per_s", f"多采集器 {k} collector(s), batched: stored", sr.rate,
                        "readings/s", f"sent {sr.sent:,}, stored {sr.stored:,}"
                        + (" ✓" if sr.stored == sr.sent else " ✗ LOST") + f"; cores: {busy}")
                fig.data[f"scale_{k}"] = {"sent": sr.sent, "stored": sr.stored, "rate": sr.rate, "held": sr.held,
                                          "cores": sr.cores, "moved": sr.moved}
                if sr.stored != sr.sent:
                    fig.failures.append(f"scale {k}: stored {sr.stored:,} of {sr.sent:,} readings sent"
                                        + (f"; leases moved during the run: {sr.moved}" if sr.moved else ""))
            if rates.get(1):
                fig.add("scale_speedup", "  speed-up, 3 collectors ÷ 1", rates.get(3, 0.0) / rates[1], "×",
                        "2 cores: bounded by the CPU shared with PostgreSQL and the broker (cores above)")
        bench.stop_collector()
        if db and e2e_b:
            fig.add("ratio_e2e_db", "比值 end to end ÷ DB ceiling", e2e_b / db * 100, "%", "target ≥ 75 % or ≥ 150k/s")
        if broker and e2e_1:
            fig.add("ratio_single_broker", "比值 single-reading ÷ broker ceiling (C clients)", e2e_1 / broker * 100,
                    "%", "both drain a queued persistent session")
    if on_part is not None:
        on_part(len(order), "done")
    return fig
