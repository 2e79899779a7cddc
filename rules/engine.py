"""The engine adapter: runs the pure evaluator inside the collector's transactions.

`process()` is called inside the batch transaction (after the readings are
written) and returns a hook the collector calls once the transaction has
committed; only then does the in-memory state move on. `tick()` runs the
clock-driven rules (stale, never reported, gateway and device offline) and lifecycle
expiries (shelving, chattering) in a transaction of its own.

At start (and when the registry changes) the catalog is compiled against the
registry and the state is rebuilt from what was recorded, never inferred:
evaluator state (conditions, on-delays in progress) from `alarms`, newest
readings per point from `readings`, last arrival per point and gateway
traffic and offline state from `point_arrivals` / `gateway_arrivals`, and the
Sparkplug devices reported dead from `sparkplug_devices`, which each batch
writes in its own transaction (migrations 0010, 0022).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import psycopg

from core.clock import Clock
from core.keys import AlarmKey
from core.readings import BatchView
from core.timeconst import US_PER_S
from rules import disposal, lifecycle, shapes_trust, store, store_disposal, store_stops
from rules.compile import Compiled, Instance, compile_rules
from rules.evaluate import (
    DEFAULT,
    Index,
    InstState,
    PointState,
    State,
    TickInputs,
    Transition,
    Updates,
    apply,
    evaluate_batch,
    evaluate_tick,
    note_devices,
    note_gateways,
)
from rules.model import Catalog
from rules.stops import SILENCE_SHAPES, Stop, covering

log = logging.getLogger("riskwatch.rules")


@dataclass
class EngineStats:
    batches: int = 0
    ticks: int = 0
    activations: int = 0
    clears: int = 0
    candidates: int = 0
    eval_s: float = 0.0
    compiles: int = 0
    last_tick: float = 0.0
    recent: list[tuple[float, str]] = field(default_factory=list)


class RuleEngine:
    """The catalog and the clock are given, never found: the composition root (api.run) loads the one catalog
    every part uses and injects the one clock, so a constructor reads no file."""

    def __init__(self, *, catalog: Catalog, clock: Clock, tick_s: float = 1.0, registry_check_s: float = 5.0,
                 on_candidate: Callable[[psycopg.Connection, int], object] | None = None,
                 arrival_snapshot_s: float = 60.0, disposal_policy: disposal.Policy | None = None):
        self.catalog = catalog
        # The warning-disposal policy (rules.disposal); None: no alarm needs feedback (nothing escalates).
        self.disposal = disposal_policy
        self.clock = clock
        self.tick_s = tick_s
        self.registry_check_s = registry_check_s
        # Called in the same transaction with each new hazard_candidates row id (the ledger's intake).
        self.on_candidate = on_candidate
        self.stats = EngineStats()
        self.compiled: Compiled | None = None
        self.index: Index | None = None
        self.state: State | None = None
        self._fingerprint: tuple[object, ...] = ()
        self._checked = 0.0
        self._point_created = np.zeros(0)
        self._gw_created: dict[str, float] = {}
        self._device_of = np.zeros(0, np.int32)  # point id -> device id (an array: 100k points)
        self._points_of: dict[str, list[int]] = {}  # gateway id -> its point ids (a takeover restores just those)
        self._windows: list[Stop] = []  # approved production stops (rules.stops), refreshed every 10 s
        self._windows_at = 0.0
        # Newest point_arrival_log row the state includes, and the one the snapshot covers (see tick).
        self._arrival_log_id = 0
        self._arrival_snapshot_id = 0
        self._arrival_snapshot_at = 0.0
        self.arrival_snapshot_s = arrival_snapshot_s
        # One collector of several (ingest.leases): inside the tick's transaction, the gateways whose rule state
        # this engine may write (their leases locked until it commits). None: the only collector, all of them.
        self.scope: Callable[[psycopg.Connection], frozenset[str]] | None = None

    # --- loading ------------------------------------------------------------------------------

    def load(self, conn: psycopg.Connection) -> None:
        """Compile against the registry and rebuild state from the database."""
        view, created, gw_created = store.load_registry(conn)
        compiled = compile_rules(self.catalog, view)
        size = (max((p.id for p in view.points), default=0)) + 1
        self._point_created = np.zeros(size)
        for pid, c in created.items():
            self._point_created[pid] = c
        self._gw_created = gw_created
        device_of = np.full(size, -1, np.int32)
        points_of: dict[str, list[int]] = {}
        for p in view.points:
            device_of[p.id] = p.device_id
            points_of.setdefault(p.gateway_id, []).append(p.id)
        self._device_of = device_of
        self._points_of = points_of
        self.compiled, self.index = compiled, Index(compiled, size)
        self.state = State(points=PointState.empty(size), seen=np.zeros(size, bool))
        self._arrival_log_id = self._restore(conn, None)
        self._arrival_snapshot_id = self._arrival_log_id  # the next batch's log row makes a snapshot due
        self._fingerprint = store.registry_fingerprint(conn)
        self._checked = time.monotonic()
        self.stats.compiles += 1
        conn.commit()
        for s in compiled.skipped:
            log.info("rule not bound: %s", s)
        log.info("rules compiled: %d instances from %d rules over %d points", len(compiled.instances),
                 len(self.catalog), len(view.points))

    @staticmethod
    def _restore_arrivals(conn: psycopg.Connection, gateway_of: Callable[[], Mapping[int, str]], compiled: Compiled,
                          inst: dict[int, InstState], hist: store.PointHistory, gws: store.GatewayRecord,
                          ps: PointState, now: float) -> int:
        """Last arrival per point as recorded with each batch (issue 15), never inferred from data timestamps.

        A point's newest data time is not when its data arrived: back-filled readings are hours old and a slow
        gateway clock lags minutes, so taking it for the arrival raised a stale alarm (a candidate major hazard)
        for a point that was reporting, cleared a second later. Points with data but no recorded arrival (data
        stored before migration 0010) are restored as the engine last judged them: a point whose stale alarm was
        active keeps its old data time (still stale); any other is taken to have arrived with its gateway's last
        recorded traffic, so the restart neither raises nor clears anything for it.
        """
        recorded, upto = store.load_point_arrivals(conn, ps.arrival.shape[0])
        np.minimum(recorded, now, out=ps.arrival)
        missing = [pid for pid in hist.last_valid if recorded[pid] <= 0]
        if not missing:
            return upto
        stale_on = {x.point_id for i, x in enumerate(compiled.instances)
                    if x.stale_us and i in inst and inst[i].active}
        gw_of = gateway_of()
        for pid in missing:
            at = hist.last_valid[pid]
            if pid not in stale_on:
                at = max(at, gws.last_seen.get(gw_of.get(pid, ""), 0.0))
            ps.arrival[pid] = min(at, now)
        return upto

    def handover(self, conn: psycopg.Connection, gained: list[str]) -> None:
        """The collector claimed `gained` from another (dead or rebalanced) collector: rebuild their state from
        what was recorded, as after a restart, so their conditions, on-delays in progress and alarms go on from
        the previous owner's last commit (its lease fence guarantees it commits nothing after our claim).

        Only the gained gateways' state is read again; the rules stay compiled unless the registry changed.
        Recompiling for every claim cost ~8 s at 200,000 points (400,000 instances) and read every point's
        newest reading, for gateways whose state had not moved."""
        if self.state is None or self.compiled is None or store.registry_fingerprint(conn) != self._fingerprint:
            log.info("rule state reloaded for gateways taken over (registry changed: recompiling): %s", gained)
            self.load(conn)
            return
        t0 = time.perf_counter()
        self._restore(conn, set(gained))
        log.info("rule state reloaded for gateways taken over: %s (%.2f s)", gained, time.perf_counter() - t0)

    def _restore(self, conn: psycopg.Connection, gained: set[str] | None) -> int:
        """Replace what this engine holds by what was recorded: for every point and instance (`gained` None, a
        load), or only for those of the gateways in `gained` (a takeover: this member's copy of them is stale
        since another collector owned them), leaving everything else as it is. Returns the newest arrival log
        row the restored arrivals include."""
        assert self.state is not None and self.compiled is not None and self.index is not None
        st, ps, insts = self.state, self.state.points, self.compiled.instances

        def ours(gateway_id: str | None) -> bool:
            return gained is None or gateway_id in gained

        pids = sorted(pid for g, ps_of in self._points_of.items() if ours(g) for pid in ps_of)
        idx = np.asarray(pids, np.int64)
        now = self.clock.now()
        hist = store.load_point_history(conn, pids)
        ps.last_t[idx] = -1
        ps.last_v[idx] = np.nan
        for pid, t in hist.last_t.items():
            ps.last_t[pid] = t
        for pid, v in hist.last_v.items():
            ps.last_v[pid] = v
        by_key = store.load_instance_states(conn)
        for i, x in enumerate(insts):
            if ours(x.gateway_id):
                s = by_key.get(x.key)
                if s is None or s.default:
                    st.inst.pop(i, None)
                else:
                    st.inst[i] = s
        gws = store.load_gateway_arrivals(conn)
        for mine, recorded in ((st.gw_last_seen, gws.last_seen), (st.gw_offline_at, gws.offline_at)):
            for g in [g for g in mine if ours(g)]:
                del mine[g]
            mine.update({g: at for g, at in recorded.items() if ours(g)})
        for key in [k for k in st.dev_offline_at if ours(k[0])]:
            del st.dev_offline_at[key]
        st.dev_offline_at.update({k: at for k, at in store.load_device_states(conn).items() if ours(k[0])})
        arrival = PointState.empty(ps.arrival.shape[0])
        upto = self._restore_arrivals(conn, lambda: {pid: g for g, ps_of in self._points_of.items() if ours(g)
                                                     for pid in ps_of}, self.compiled, st.inst, hist, gws, arrival, now)
        ps.arrival[idx] = arrival.arrival[idx]
        windows = self.index.rate_window
        if gained is not None:
            pidset = set(pids)
            windows = {pid: w for pid, w in windows.items() if pid in pidset}
        for pid in windows:
            st.history.pop(pid, None)
        st.history.update(store.load_rate_history(conn, windows))
        conn.commit()
        return upto

    def _maybe_reload(self, conn: psycopg.Connection) -> None:
        if self.state is None:
            self.load(conn)
            return
        if time.monotonic() - self._checked < self.registry_check_s:
            return
        self._checked = time.monotonic()
        fp = store.registry_fingerprint(conn)
        conn.commit()
        if fp != self._fingerprint:
            log.info("registry changed: recompiling rules")
            self.load(conn)

    # --- batches ------------------------------------------------------------------------------

    def process(self, conn: psycopg.Connection, batch: BatchView, now: float) -> Callable[[], None]:
        """Evaluate a batch inside its transaction; return the hook to call after commit."""
        assert self.state is not None and self.index is not None and self.compiled is not None
        t0 = time.perf_counter()
        u, transitions = evaluate_batch(batch.readings(), self.state, self.index, now)
        note_gateways(u, batch.last_seen, batch.status, batch.replayed, self.state, self._gw_created)
        note_devices(u, batch.devices, self.state)
        if batch.skew:  # gateway clocks, for the clock_skew rule (rules.shapes_trust)
            u.trust = u.trust or shapes_trust.TrustUpdates()
            shapes_trust.note_skew(u.trust, batch.skew, now)
        # What a restart must restore, recorded with the readings (one upsert each), as the state will hold it.
        log_id = store.log_point_arrivals(conn, u.arrival_pid, now)
        store.save_gateway_arrivals(conn, u.gw_last_seen, u.gw_offline_at, now)
        store.save_device_states(conn, u.dev_offline_at, now)
        transitions = self._persist(conn, u, transitions)
        self.stats.eval_s += time.perf_counter() - t0
        return lambda: self._committed(u, transitions, log_id)

    def prepare(self, conn: psycopg.Connection) -> None:
        """Before a batch's transaction: compile on first use, recompile if the registry changed."""
        self._maybe_reload(conn)

    def _committed(self, u: Updates, transitions: list[Transition], log_id: int | None = None) -> None:
        assert self.state is not None
        apply(self.state, u)
        if log_id is not None:
            self._arrival_log_id = max(self._arrival_log_id, log_id)
        self.stats.batches += 1
        for tr in transitions:
            if tr.kind == "activate":
                self.stats.activations += 1
            else:
                self.stats.clears += 1

    def _defer_stopped(self, conn: psycopg.Connection, u: Updates, transitions: list[Transition]) -> list[Transition]:
        """Drop the activations of silence rules that an approved production stop covers (rules.stops): a stopped
        plant is silent by design. Their instance state is left as it was, so the next tick looks again and a
        plant still silent when its stop ends is raised then (with its candidate), not before."""
        assert self.compiled is not None
        insts = self.compiled.instances
        kept = []
        for tr in transitions:
            inst = insts[tr.index]
            if (tr.kind == "activate" and inst.shape in SILENCE_SHAPES
                    and self._stop_at(conn, inst, tr.time_us / US_PER_S) is not None):
                u.inst.pop(tr.index, None)
                continue
            kept.append(tr)
        return kept

    def _persist(self, conn: psycopg.Connection, u: Updates, transitions: list[Transition]) -> list[Transition]:
        """Record the transitions (and what they owe: events, candidates, outbox, disposals); the ones kept."""
        assert self.compiled is not None
        insts = self.compiled.instances
        if transitions:
            transitions = self._defer_stopped(conn, u, transitions)
        store.save_instance_states(conn, ((insts[i], s) for i, s in u.inst.items()))
        if not transitions:
            return transitions
        owed: list[store_disposal.NewDisposal] = []
        keys = sorted({insts[t.index].key for t in transitions})
        alarms = store.lock_alarms(conn, keys)
        events: list[tuple[AlarmKey, store.AlarmMeta, lifecycle.Event, float | None]] = []
        for tr in transitions:
            inst = insts[tr.index]
            a = alarms.get(inst.key, lifecycle.Alarm())
            t = tr.time_us / US_PER_S
            if tr.kind == "activate":
                a, evs = lifecycle.activate(a, t, tr.reason, in_maintenance=self._maintenance(conn, inst, t))
            else:
                a, evs = lifecycle.clear(a, t, tr.reason)
            alarms[inst.key] = a
            store.write_alarm(conn, inst.key, a, tr.value, tr.reason)
            meta = store.AlarmMeta(inst.point_id, inst.gateway_id, inst.plant_id, inst.severity,
                                   inst.catalog_version)
            events += [(inst.key, meta, e, tr.value) for e in evs]
            if (self.disposal is not None and disposal.requires_feedback(self.disposal, inst.severity)
                    and any(e.event == "activate" and e.annunciate for e in evs)):
                owed.append(store_disposal.NewDisposal(inst.key, inst.plant_id, inst.enterprise_id, inst.severity, t))
            if tr.kind == "activate" and inst.candidate:
                evidence = {
                    "rule": inst.rule_id, "basis": inst.basis, "catalog_version": inst.catalog_version,
                    "subject": inst.subject, "point_id": inst.point_id, "gateway_id": inst.gateway_id,
                    "detected_at": t, "reason": tr.reason, "readings": store.evidence_window(conn, inst, t),
                }
                cid = store.insert_candidate(conn, inst, t, tr.reason, evidence)
                if self.on_candidate is not None:
                    self.on_candidate(conn, cid)
                self.stats.candidates += 1
            self.stats.recent = (self.stats.recent + [(t, f"{tr.kind} {inst.rule_id} {inst.subject}")])[-50:]
        store.insert_events(conn, events)
        if owed and self.disposal is not None:
            store_disposal.open_disposals(conn, self.disposal, owed)
        return transitions

    def _stop_at(self, conn: psycopg.Connection, inst: Instance, t: float) -> Stop | None:
        """The approved production stop (停产报备, rules.stops) covering the instance at data time t."""
        now = self.clock.now()
        if now - self._windows_at > 10.0 or now < self._windows_at:
            self._windows = store_stops.load_stops(conn, now)
            self._windows_at = now
        dev = (int(self._device_of[inst.point_id])
               if inst.point_id is not None and 0 <= inst.point_id < len(self._device_of) else None)
        return covering(self._windows, inst.plant_id, dev, t)

    def _maintenance(self, conn: psycopg.Connection, inst: Instance, t: float) -> str | None:
        s = self._stop_at(conn, inst, t)
        return None if s is None else f"停产报备 production stop #{s.id} {s.reason}"

    # --- tick ---------------------------------------------------------------------------------

    def tick(self, conn: psycopg.Connection) -> None:
        """Clock-driven rules and lifecycle expiries, in their own transaction."""
        self._maybe_reload(conn)
        assert self.state is not None and self.index is not None and self.compiled is not None
        now = self.clock.now()
        u, transitions = evaluate_tick(self.state, self.index,
                                       TickInputs(now, self._point_created, self._gw_created))
        snapshot = (self._arrival_log_id > self._arrival_snapshot_id
                    and time.monotonic() - self._arrival_snapshot_at >= self.arrival_snapshot_s)
        with conn.transaction():
            owned = None if self.scope is None else self.scope(conn)
            if owned is not None:
                u, transitions = self._within(owned, u, transitions)
            transitions = self._persist(conn, u, transitions)
            self._lifecycle_tick(conn, now, owned)
            self._disposal_tick(conn, now)
            if snapshot and owned is not None:
                # Other collectors log arrivals too: fold every committed log row, keeping the newest per point.
                store.merge_point_arrivals(conn, self.state.points.arrival)
            elif snapshot:
                # Between batches the state holds every committed log row up to _arrival_log_id: fold them.
                store.snapshot_point_arrivals(conn, self.state.points.arrival, self._arrival_log_id)
        if snapshot:
            self._arrival_snapshot_id = self._arrival_log_id
            self._arrival_snapshot_at = time.monotonic()
        apply(self.state, u)
        self.stats.ticks += 1
        self.stats.last_tick = now
        for tr in transitions:
            if tr.kind == "activate":
                self.stats.activations += 1
            else:
                self.stats.clears += 1

    def _within(self, owned: frozenset[str], u: Updates,
                transitions: list[Transition]) -> tuple[Updates, list[Transition]]:
        """The tick's updates restricted to instances of gateways this collector holds: another collector's
        points are silent here only because their data goes there."""
        assert self.compiled is not None
        insts = self.compiled.instances
        u.inst = {i: s for i, s in u.inst.items() if insts[i].gateway_id in owned}
        return u, [t for t in transitions if insts[t.index].gateway_id in owned]

    def _lifecycle_tick(self, conn: psycopg.Connection, now: float, owned: frozenset[str] | None = None) -> None:
        due = store.due_lifecycle(conn, now)
        if owned is not None and self.compiled is not None:
            gw_of = {x.key: x.gateway_id for x in self.compiled.instances}
            due = {k: a for k, a in due.items() if gw_of.get(k) in owned}
        events: list[tuple[AlarmKey, store.AlarmMeta, lifecycle.Event, float | None]] = []
        for key, a in due.items():
            b, evs = lifecycle.tick(a, now)
            if evs:
                store.write_alarm(conn, key, b)
                meta = store.meta_of(conn, key)
                events += [(key, meta, e, None) for e in evs]
        store.insert_events(conn, events)

    def _disposal_tick(self, conn: psycopg.Connection, now: float) -> None:
        """Escalate unanswered warnings whose next tier is due (rules.disposal), on the tick's clock."""
        if self.disposal is None:
            return
        for x in store_disposal.due(conn, now):
            store_disposal.record_steps(conn, x, disposal.decide(x.d, self.disposal, now), now)

    def reload_stops(self) -> None:
        """Read the approved stops again at the next transition (after a decision, instead of within 10 s)."""
        self._windows_at = 0.0

    def instance_state(self, key: AlarmKey) -> InstState:
        assert self.compiled is not None and self.state is not None
        for i, inst in enumerate(self.compiled.instances):
            if inst.key == key:
                return self.state.inst.get(i, DEFAULT)
        raise KeyError(key)
