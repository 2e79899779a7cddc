"""The dispatcher: outbox → route → groups → stages → notifications → channels → delivery log.

Three steps, each its own short transaction, each safe to run in several
processes at once:

- `route_once`: claim outbox rows (one router at a time, so an alarm's firing,
  acknowledgement and return to normal are applied in order), route each to
  groups by the routing tree, apply it to the group's member (dedup), and set
  when the group is next due.
- `flush_once`: claim due groups (`FOR UPDATE SKIP LOCKED`), let the pure
  pipeline decide (group wait, reminders, escalation, resolved notices), and
  write one notification per channel and contact, rendered once, each with its
  idempotency key and its signed acknowledgement link.
- `deliver_once`: claim one due notification (`FOR UPDATE SKIP LOCKED`), send
  it, record the attempt; on failure back off exponentially with jitter, and
  after `max_attempts` (or a permanent error) mark it dead. A dispatcher
  killed between sending and recording leaves the row unrecorded and
  unlocked: it is sent again with the same idempotency key (at least once).

`run()` drives them: a LISTEN on the outbox wakes the router at once, worker
threads deliver in parallel. The clock is injected; tests call the steps.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TypedDict

import psycopg

from alerting import ack, pipeline, store
from alerting.channels import Channel, Contact, DeliveryError, Message, build_channel
from alerting.config import AlertingConfig
from alerting.model import FIRING, Group, Notice, Step
from alerting.render import ItemInfo, render
from alerting.route import EnterpriseContacts, Event, Match, contacts_for, group_key, route
from alerting.routing import Timing
from alerting.stages import dedup
from core.clock import Clock
from core.keys import AlarmItem, AlarmKey, DisposalItem, HazardItem, Subject
from core.outbox import CHANNEL as OUTBOX_CHANNEL
from core.redact import redact_text

log = logging.getLogger("riskwatch.alerting")

#: Hazard notices that wait for acknowledgement (reminded, escalated); the others are announced once.
HAZARD_NEEDS_ACK = frozenset({"opened", "confirmed", "supervised", "sent_back"})
#: A confirmed or supervised ticket is a major hazard (重大事故隐患): routed as urgent.
HAZARD_SEVERITY = {"confirmed": "urgent", "supervised": "urgent"}


@dataclass
class DispatchStats:
    routed: int = 0
    notifications: int = 0
    sent: int = 0
    failed: int = 0
    dead: int = 0
    unrouted: int = 0
    last_error: str | None = None
    by_channel: dict[str, int] = field(default_factory=dict)


class _NoticeFields(TypedDict):
    """What every notification of one notice shares."""

    group_id: int
    seq: int
    kind: str
    reason: str
    receiver: str
    enterprise_id: str | None
    items: list[str]


def backoff(attempt: int, initial: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with "equal jitter": half fixed, half random, so retries spread out."""
    d = min(cap, initial * float(2 ** max(0, attempt - 1)))
    return d / 2 + rng.uniform(0, d / 2)


#: Rule id -> (Chinese title, basis), from the catalog the rule engine runs (rules.model.Catalog.titles).
Titles = dict[str, tuple[str, str | None]]


class Dispatcher:
    """`titles` and `clock` are given by the composition root (api.run): alerting reads no rule catalog,
    and a constructor opens no file and no connection (channels connect on their first send)."""

    def __init__(self, db_url: str, cfg: AlertingConfig, *, public_url: str, link_secret: bytes,
                 clock: Clock, titles: Titles, workers: int = 4, channels: dict[str, Channel] | None = None,
                 rng: random.Random | None = None):
        self.db_url = db_url
        self.cfg = cfg
        self.public_url = public_url
        self.link_secret = link_secret
        self.clock = clock
        self.titles = titles
        self.workers = workers
        self.channels = channels if channels is not None else {
            name: build_channel(name, c) for name, c in cfg.channels.items()}
        self.rng = rng or random.Random()
        self.stats = DispatchStats()
        self._wake = threading.Event()
        self._stop = threading.Event()

    # --- routing ----------------------------------------------------------------------------

    def _event(self, r: store.OutboxRow, plants: dict[str, store.PlantInfo],
               hazards: dict[int, store.HazardInfo]) -> tuple[Event, str, str | None, str | None] | None:
        """(routing labels, member item, enterprise, plant) of an outbox row; None if its subject is gone."""
        if r.kind == "disposal":
            p = plants.get(r.plant_id or "")
            if p is None or r.disposal_id is None:
                return None
            ev = Event("disposal", r.event, r.severity, p.industry, p.enterprise_id, r.plant_id, r.rule_id, r.subject,
                       "sensor", None)
            return ev, DisposalItem(r.disposal_id, r.event).format(), p.enterprise_id, r.plant_id
        if r.kind == "alarm":
            p = plants.get(r.plant_id or "")
            if p is None:
                return None
            # Routed as the alarm it is, whatever happened to it, so its return to normal and its
            # acknowledgement reach the groups its firing went to.
            ev = Event("alarm", "firing", r.severity, p.industry, p.enterprise_id, r.plant_id, r.rule_id, r.subject,
                       "sensor", None)
            return ev, AlarmItem(AlarmKey(r.rule_id or "", r.subject or "")).format(), p.enterprise_id, r.plant_id
        h = hazards.get(r.hazard_id or 0)
        if h is None:
            return None
        ev = Event("hazard", r.event, HAZARD_SEVERITY.get(r.event, "high"), h.industry, h.enterprise_id,
                   h.plant_id, h.rule_id, h.subject, h.source, str(r.hazard_id))
        return ev, HazardItem(r.hazard_id or 0, r.event).format(), h.enterprise_id, h.plant_id

    def _disposal_matches(self, ev: Event) -> list[Match]:
        """A disposal step goes to its tier's receivers (the routing file's `disposal:`), not down the route
        tree: the tree's catch-all root would tell every tier to whoever takes everything."""
        receivers = self.cfg.disposal.get(ev.event, ())
        if not receivers:
            log.warning("disposal tier %s has no receiver in %s: step recorded, nobody told", ev.event,
                        self.cfg.source)
            return []
        timing = Timing(("enterprise", "plant", "event"), 0.0, 0.0, 0.0)
        return [Match(f"disposal.{ev.event}", receivers, timing, f"disposal tier {ev.event}")]

    def _needs_enterprise_key(self, receiver: str) -> bool:
        rc = self.cfg.receivers.get(receiver)
        return rc is not None and any(t.enterprise for t in rc.to)

    def route_once(self, conn: psycopg.Connection) -> int:
        now = self.clock.now()
        with conn.transaction():
            if not store.router_lock(conn):
                return 0
            rows = store.claim_outbox(conn)
            if not rows:
                return 0
            plants = store.plants(conn, [r.plant_id for r in rows if r.plant_id])
            hazards = store.hazards(conn, [r.hazard_id for r in rows if r.hazard_id])
            groups: dict[int, Group] = {}
            locked: dict[tuple[str, str, str], Group] = {}  # a flood locks its group once per batch
            members: dict[int, dict[str, store.MemberRow]] = {}
            dirty: dict[int, set[str]] = {}
            replan: set[int] = set()

            def save_dirty() -> None:
                for gid, items in dirty.items():
                    store.save_members(conn, gid, [members[gid][i] for i in items], now)
                replan.update(dirty)
                dirty.clear()

            for r in rows:
                got = self._event(r, plants, hazards)
                if got is None:
                    self.stats.unrouted += 1
                    log.warning("outbox #%d: its plant or ticket no longer exists; not routed", r.id)
                    continue
                ev, item, enterprise, plant = got
                event, needs_ack = r.event, True
                if r.kind == "hazard":
                    # A new step on a ticket answers its earlier notices (also those routed earlier in
                    # this batch): stop reminding about them.
                    save_dirty()
                    earlier = [i for _, i in store.firing_of_hazard(conn, r.hazard_id or 0) if i != item]
                    touched = store.ack_items(conn, earlier, f"{r.actor or 'system'}（{r.event}）", now)
                    store.touch_groups(conn, touched, now)
                    for gid in touched:
                        if gid in members:
                            members[gid] = store.members(conn, gid)
                            replan.add(gid)
                    event, needs_ack = FIRING, r.event in HAZARD_NEEDS_ACK
                if r.kind == "disposal":
                    # An escalation step is itself the escalation: told once to its tier, never reminded.
                    event, needs_ack = FIRING, False
                matches = self._disposal_matches(ev) if r.kind == "disposal" else route(self.cfg, ev)
                if not matches or not any(m.receivers for m in matches):
                    self.stats.unrouted += 1
                for m in matches:
                    for receiver in m.receivers:
                        key = group_key(m.timing, ev)
                        if self._needs_enterprise_key(receiver):
                            key += f"|enterprise={enterprise}"  # an enterprise's people see only their own
                        g = locked.get((m.path, receiver, key))
                        if g is None:
                            g = locked[(m.path, receiver, key)] = store.lock_group(
                                conn, m.path, receiver, key, group_wait=m.timing.group_wait,
                                group_interval=m.timing.group_interval, repeat_interval=m.timing.repeat_interval,
                                escalation=[_step(s) for s in m.timing.escalation], enterprise_id=enterprise,
                                now=now)
                        groups[g.id] = g
                        ms = members.get(g.id)
                        if ms is None:
                            ms = members[g.id] = store.members(conn, g.id)
                        cur = ms.get(item)
                        new, why = dedup.apply_event(cur.m if cur else None, item, event, r.event_time, now,
                                                     r.actor, needs_ack)
                        if new is None or (cur is not None and new == cur.m):
                            log.debug("outbox #%d → group %d: %s", r.id, g.id, why)
                            continue
                        ms[item] = store.MemberRow(
                            new, r.kind, r.rule_id or (hazards[r.hazard_id].rule_id if r.hazard_id else None),
                            r.subject, r.hazard_id, plant, enterprise, ev.severity, r.event, r.value, r.reason)
                        dirty.setdefault(g.id, set()).add(item)
            save_dirty()
            for gid in replan:
                nxt, _ = pipeline.next_due(groups[gid], [x.m for x in members[gid].values()])
                store.save_group(conn, groups[gid], nxt)
            store.mark_routed(conn, [r.id for r in rows], now)
        self.stats.routed += len(rows)
        return len(rows)

    # --- flushing -----------------------------------------------------------------------------

    def flush_once(self, conn: psycopg.Connection) -> int:
        now = self.clock.now()
        created = 0
        with conn.transaction():
            for g in store.due_groups(conn, now):
                rows = store.members(conn, g.id)
                plan = pipeline.decide(g, [x.m for x in rows.values()], now)
                notes = self._notifications(conn, g, plan.notices, rows, now)
                store.insert_notifications(conn, notes, now)
                changed = [replace(rows[m.item], m=m) for m in plan.members if m != rows[m.item].m]
                store.save_members(conn, g.id, changed, now)
                store.save_group(conn, plan.group, plan.next_at)
                if plan.notices:
                    log.info("group %d (%s): %s", g.id, g.receiver, plan.reason)
                created += len(notes)
        if created:
            self.stats.notifications += created
            self._wake.set()
        return created

    def _notifications(self, conn: psycopg.Connection, g: Group, notices: Sequence[Notice],
                       rows: dict[str, store.MemberRow], now: float) -> list[store.NewNotification]:
        out: list[store.NewNotification] = []
        for i, notice in enumerate(notices):
            seq = g.seq + i + 1
            subject_rows = [rows[x] for x in (*notice.items, *notice.resolved)]
            enterprises = {x.enterprise_id for x in subject_rows}
            enterprise = next(iter(enterprises)) if len(enterprises) == 1 else None
            infos = self._infos(conn, subject_rows)
            receiver = self.cfg.receivers.get(notice.receiver)
            base = _NoticeFields(group_id=g.id, seq=seq, kind=notice.kind, reason=notice.reason,
                                 receiver=notice.receiver, enterprise_id=enterprise,
                                 items=[*notice.items, *notice.resolved])
            if receiver is None:
                out.append(store.NewNotification(
                    key=f"rw-{g.id}-{seq}-none", channel="-", contact_id=None, address=None, contacts=(),
                    message=self._message(notice, f"rw-{g.id}-{seq}-none", infos, rows, g, now),
                    status="dead", last_error=f"receiver {notice.receiver} is not in the routing file", **base))
                continue
            resolved = contacts_for(self.cfg, notice.receiver, now, self._enterprise(conn, enterprise))
            for ch_name in receiver.via:
                ch = self.channels[ch_name]
                if not ch.per_contact:
                    key = f"rw-{g.id}-{seq}-{ch_name}"
                    out.append(store.NewNotification(
                        key=key, channel=ch_name, contact_id=None, address=None, contacts=resolved.contacts,
                        message=self._message(notice, key, infos, rows, g, now), **base))
                    continue
                for c in resolved.contacts:
                    key = f"rw-{g.id}-{seq}-{ch_name}-{c.id}"
                    addr = ch.address(c)
                    out.append(store.NewNotification(
                        key=key, channel=ch_name, contact_id=c.id, address=addr, contacts=(c,),
                        message=self._message(notice, key, infos, rows, g, now),
                        status="pending" if addr else "dead",
                        last_error=None if addr else f"{c.name} 无{ch_name}联系方式 has no address for {ch_name}",
                        **base))
                for k, why in enumerate(resolved.missing):
                    key = f"rw-{g.id}-{seq}-{ch_name}-missing{k}"
                    out.append(store.NewNotification(
                        key=key, channel=ch_name, contact_id=None, address=None, contacts=(),
                        message=self._message(notice, key, infos, rows, g, now), status="dead", last_error=why,
                        **base))
        return out

    def _message(self, notice: Notice, key: str, infos: dict[str, ItemInfo], rows: dict[str, store.MemberRow],
                 g: Group, now: float) -> Message:
        ackable = notice.kind != "resolved" and any(rows[x].m.needs_ack for x in notice.items)
        link = ack.url(self.public_url, ack.sign(self.link_secret, key, now + self.cfg.delivery.ack_link_ttl)) \
            if ackable else None
        step = None
        if notice.kind == "escalation":
            step = next((s.after for s in g.escalation if s.receiver == notice.receiver), None)
        return render(notice.kind, key, [infos[x] for x in notice.items], [infos[x] for x in notice.resolved],
                      reason=notice.reason, ack_url=link, tz=self.cfg.tz, escalation_after=step,
                      data={"receiver": notice.receiver, "group": g.id, "seq": g.seq})

    def _enterprise(self, conn: psycopg.Connection, enterprise: str | None) -> EnterpriseContacts | None:
        if enterprise is None:
            return None
        got = store.enterprise_contacts(conn, enterprise)
        if got is None:
            return EnterpriseContacts(enterprise, None, None)
        _, (pn, pp, pe, cn, cp, ce) = got
        principal = Contact(f"enterprise:{enterprise}:principal", pn, pe, pp) if pn and (pp or pe) else None
        controller = Contact(f"enterprise:{enterprise}:controller", cn, ce, cp) if cn and (cp or ce) else None
        return EnterpriseContacts(enterprise, principal, controller)

    def _infos(self, conn: psycopg.Connection, rows: Sequence[store.MemberRow]) -> dict[str, ItemInfo]:
        subjects = {x.subject: _subject(x.subject) for x in rows if x.kind in ("alarm", "disposal") and x.subject}
        points = store.point_labels(conn, [s.point_id for s in subjects.values()
                                           if s is not None and s.point_id is not None])
        plants, enterprises = store.names(conn, [x.plant_id for x in rows if x.plant_id],
                                          [x.enterprise_id for x in rows if x.enterprise_id])
        tickets = store.hazard_titles(conn, [x.hazard_id for x in rows if x.hazard_id])
        out = {}
        for x in rows:
            plant = plants.get(x.plant_id or "")
            ent = enterprises.get(x.enterprise_id or "")
            if x.kind in ("alarm", "disposal"):
                # alarm rule ids carry the limit they tripped (bm.coal.co:hi); the catalog names the rule
                base = (x.rule_id or "").split(":", 1)[0]
                title, basis = self.titles.get(base, (x.rule_id or "报警", None))
                where, unit = x.subject, ""
                subj = subjects.get(x.subject or "")
                if subj is not None and subj.point_id is not None and subj.point_id in points:
                    tag, name, unit = points[subj.point_id]
                    where = f"{tag} {name}".strip()
                elif subj is not None and subj.device_id is not None:
                    where = f"设备 device {subj.device_id} · 网关 gateway {subj.gateway_id}"
                elif subj is not None and subj.gateway_id is not None:
                    where = f"网关 gateway {subj.gateway_id}"
                value = f"{x.value:.4g} {unit}".strip() if x.value is not None else None
                out[x.m.item] = ItemInfo(x.m.item, x.kind, title, x.severity, ent, plant, where, value, x.m.since,
                                         x.reason, basis, x.event if x.kind == "disposal" else None, x.m.status,
                                         announced=x.m.notified_at is not None)
            else:
                title, basis, location = tickets.get(x.hazard_id or 0, (f"隐患 #{x.hazard_id}", None, None))
                out[x.m.item] = ItemInfo(x.m.item, "hazard", f"#{x.hazard_id} {title}", x.severity, ent, plant,
                                         location, None, x.m.since, x.reason, basis, x.event, x.m.status)
        return out

    # --- delivery -----------------------------------------------------------------------------

    def deliver_once(self, conn: psycopg.Connection) -> bool:
        """Attempt the next due notification; False when none is due."""
        d = self.cfg.delivery
        with conn.transaction():
            n = store.claim_due(conn, self.clock.now())
            if n is None:
                return False
            started = self.clock.now()
            ch = self.channels.get(n.channel)
            ok, transient, detail = False, False, ""
            if ch is None:
                detail = f"channel {n.channel} is not in the routing file"
            else:
                try:
                    detail = ch.send(n.message, n.contacts).detail
                    ok = True
                except DeliveryError as exc:
                    transient, detail = exc.transient, f"{exc}{' — ' + exc.detail if exc.detail else ''}"
                except Exception as exc:  # noqa: BLE001 - a failing channel never stops delivery
                    # an unexpected library error may quote the URL it failed on, credentials included
                    transient, detail = True, redact_text(f"{type(exc).__name__}: {exc}")
            finished = self.clock.now()
            attempt = n.attempts + 1
            if ok:
                status, nxt = "sent", None
            elif transient and attempt < d.max_attempts:
                status, nxt = "pending", finished + backoff(attempt, d.backoff_initial, d.backoff_max, self.rng)
            else:
                status, nxt = "dead", None
            store.record_attempt(conn, n, ok=ok, transient=None if ok else transient, detail=detail,
                                 started=started, finished=finished, status=status, next_attempt_at=nxt)
        self.stats.by_channel[n.channel] = self.stats.by_channel.get(n.channel, 0) + 1
        if ok:
            self.stats.sent += 1
        else:
            self.stats.failed += 1
            self.stats.last_error = detail
            if status == "dead":
                self.stats.dead += 1
                log.error("notification %s dead after %d attempt(s): %s", n.key, attempt, detail)
            else:
                log.warning("notification %s attempt %d failed (retry at +%.1fs): %s", n.key, attempt,
                            (nxt or finished) - finished, detail)
        return True

    # --- running ------------------------------------------------------------------------------

    def run(self) -> None:
        self._stop.clear()
        workers = [threading.Thread(target=self._deliver_loop, name=f"rw-deliver-{i}", daemon=True)
                   for i in range(self.workers)]
        for w in workers:
            w.start()
        try:
            with psycopg.connect(self.db_url, autocommit=True, application_name="riskwatch-alerting") as listen, \
                    psycopg.connect(self.db_url, application_name="riskwatch-alerting") as conn:
                listen.execute(f"LISTEN {OUTBOX_CHANNEL}")
                while not self._stop.is_set():
                    while self.route_once(conn):
                        pass
                    self.flush_once(conn)
                    nxt = store.next_flush(conn)
                    conn.rollback()
                    wait = 1.0 if nxt is None else min(1.0, max(0.0, nxt - self.clock.now()))
                    if wait > 0:
                        for _ in listen.notifies(timeout=wait, stop_after=1):
                            pass
        finally:
            self._stop.set()
            self._wake.set()
            for w in workers:
                w.join(30)

    def _deliver_loop(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.db_url, application_name="riskwatch-delivery") as conn:
                    while not self._stop.is_set():
                        if not self.deliver_once(conn):
                            self._wake.wait(0.2)
                            self._wake.clear()
            except psycopg.Error as exc:
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.error("delivery worker: %s; reconnecting", exc)
                self._stop.wait(1.0)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def close(self) -> None:
        for ch in self.channels.values():
            ch.close()


def _subject(text: str) -> Subject | None:
    """An alarm member's subject; a malformed one (not written by this project) is shown as it is."""
    try:
        return Subject.parse(text)
    except ValueError:
        return None


def _step(s: object) -> Step:
    return Step(float(s.after), str(s.receiver))  # type: ignore[attr-defined]
