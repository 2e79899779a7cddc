"""Backup while the collector ingests, restore into a fresh private cluster, ingest again (issue 16).

Real pieces only: the private PostgreSQL+TimescaleDB of the session, a second private cluster started here for
the restore, real Mosquitto brokers, the real collector in a subprocess and the simulator's gateway client.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from core.backup import BackupError, backup, restore
from core.db import migrate, migrations
from core.services import LocalMosquitto, LocalPostgres, ServicesState, free_port
from hazards import ledger, workflow
from hazards.model import Actor
from simulators.gateway import GatewayAuthError, GatewayError, GatewayPublisher
from tests.conftest import FIXTURES, CollectorProcess, Site, broker_tls, sql_one, wait_for

pytestmark = pytest.mark.integration

CATALOG = FIXTURES / "rules_test.yaml"
DUTY = Actor("duty-zhang", "bureau")

# What must come back identical. Gateways: the registry columns, not the liveness the collector keeps updating.
LEDGER_AND_REGISTRY = {
    "enterprises": "SELECT * FROM enterprises ORDER BY id",
    "plants": "SELECT * FROM plants ORDER BY id",
    "gateways": "SELECT id, plant_id, name, enabled, credential_hash FROM gateways ORDER BY id",
    "devices": "SELECT * FROM devices ORDER BY id",
    "points": "SELECT * FROM points ORDER BY id",
    "alarms": "SELECT * FROM alarms ORDER BY rule_id, point_id",
    "alarm_events": "SELECT * FROM alarm_events ORDER BY time, rule_id, event",
    "hazard_candidates": "SELECT * FROM hazard_candidates ORDER BY id",
    "hazards": "SELECT * FROM hazards ORDER BY id",
    "hazard_events": "SELECT * FROM hazard_events ORDER BY id",
    "hazard_evidence": "SELECT * FROM hazard_evidence ORDER BY id",
    "schema_migrations": "SELECT version, name FROM schema_migrations ORDER BY version",
}


def tables(url: str) -> dict[str, list[tuple[object, ...]]]:
    with psycopg.connect(url) as conn:
        return {name: conn.execute(q).fetchall() for name, q in LEDGER_AND_REGISTRY.items()}  # type: ignore[arg-type]


def reading_keys(url: str) -> set[tuple[int, object]]:
    with psycopg.connect(url) as conn:
        return {(r[0], r[1]) for r in conn.execute("SELECT point_id, time FROM readings")}


@pytest.fixture
def fresh_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPostgres]:
    """A second private PostgreSQL+TimescaleDB cluster, empty: where a backup is restored."""
    data_dir = tmp_path_factory.mktemp("rw-restore")
    root = os.geteuid() == 0
    pg_dir = f"/var/tmp/riskwatch-pg/restore-{uuid.uuid4().hex[:10]}" if root else str(data_dir / "pg")
    if root:
        Path(pg_dir).parent.mkdir(parents=True, exist_ok=True)
        os.chmod(Path(pg_dir).parent, 0o755)
    state = ServicesState(pg_dir=pg_dir, pg_port=free_port(), pg_password=secrets.token_urlsafe(12),
                          mqtt_port=0, collector_password="")
    server = LocalPostgres(data_dir, state)
    server.init()
    server.start()
    yield server
    server.stop(mode="immediate")
    shutil.rmtree(pg_dir, ignore_errors=True)


class Feeder:
    """The simulator's gateway client publishing one reading every few milliseconds until stopped."""

    def __init__(self, site: Site, gateway: str, tag: str):
        b = site.broker
        self.gw = GatewayPublisher(gateway, site.credentials[gateway], "127.0.0.1", b.state.mqtt_port, tls=site.tls)
        self.tag = tag
        self.stop = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self._run, name=f"feeder-{gateway}", daemon=True)

    def _run(self) -> None:
        t = int(time.time() * 1000) - 3_600_000
        while not self.stop.is_set():
            self.gw.publish_telemetry([self.tag], [20.0 + self.sent % 7], [t + self.sent])
            self.sent += 1
            time.sleep(0.003)

    def __enter__(self) -> Feeder:
        self.gw.start()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)
        self.gw.wait_acked(20)
        self.gw.close()


def make_ledger(site: Site, collector: CollectorProcess) -> None:
    """Alarms, a candidate and a confirmed ticket: CO high (a candidate rule) and TT high on gw-a1."""
    gw = GatewayPublisher("gw-a1", site.credentials["gw-a1"], "127.0.0.1", site.broker.state.mqtt_port,
                          tls=site.tls)
    gw.start()
    t0 = int(time.time() * 1000) - 120_000
    for k in range(8):
        gw.publish_telemetry(["CO-101", "TT-101"], [30.0, 75.0], [t0 + k * 1000, t0 + k * 1000])
    assert gw.wait_acked(20)
    gw.close()
    wait_for(lambda: sql_one(site.db_url, "SELECT count(*) FROM hazard_candidates") == 1, message="a candidate")
    wait_for(lambda: sql_one(site.db_url, "SELECT count(*) FROM alarms WHERE active") == 2, message="two alarms")
    with psycopg.connect(site.db_url) as conn:
        ledger.sweep_candidates(conn)
        conn.commit()
        tid = conn.execute("SELECT id FROM hazards").fetchone()[0]  # type: ignore[index]
        ledger.act(conn, tid, workflow.Confirm("现场核实 confirmed on site"), DUTY, time.time())
        conn.commit()
    assert sql_one(site.db_url, "SELECT status FROM hazards") == "confirmed"


def test_backup_during_ingest_restores_into_fresh_cluster_and_ingests_again(
    mini_site: Site, collector: CollectorProcess, fresh_cluster: LocalPostgres, tmp_path: Path
) -> None:
    collector.extra_args = ["--catalog", str(CATALOG)]
    collector.start()
    make_ledger(mini_site, collector)
    dump = tmp_path / "backups" / "riskwatch.dump"
    with Feeder(mini_site, "gw-a2", "TT-201") as feed:
        wait_for(lambda: feed.sent > 200, message="the feeder under way")
        wait_for(lambda: sql_one(mini_site.db_url, "SELECT count(*) FROM readings WHERE point_id ="
                                 " (SELECT id FROM points WHERE tag = 'TT-201')") > 100, message="ingest under way")
        before = reading_keys(mini_site.db_url)  # committed before the backup starts
        expected = tables(mini_site.db_url)
        result = backup(mini_site.db_url, dump)
        sent_during = feed.sent
        wait_for(lambda: feed.sent > sent_during + 100, message="ingest going on after the backup")
    after_backup = reading_keys(mini_site.db_url)
    assert len(after_backup) > len(before), "the collector was not ingesting while the backup ran"
    assert collector.stop() == 0

    assert result.file == dump and result.size_bytes == dump.stat().st_size > 0
    assert stat.S_IMODE(dump.stat().st_mode) == 0o600  # it holds credential hashes
    assert result.schema_version == max(m.version for m in migrations())
    assert not list(dump.parent.glob(".*partial")), "no partial file left behind"

    # A fresh private cluster and a fresh broker that knows no gateway yet.
    target = fresh_cluster.url.rsplit("/", 1)[0] + "/restored"
    new_broker_state = ServicesState(pg_dir="", pg_port=0, pg_password="", mqtt_port=free_port(),
                                     collector_password=secrets.token_urlsafe(12))
    new_broker = LocalMosquitto(tmp_path / "restored-broker", new_broker_state)
    new_broker.write_config()
    assert "gw-a1" not in new_broker.passwd.read_text()
    new_broker.start()
    try:
        res = restore(target, dump, broker=new_broker)
        assert res.broker_synced and res.database == "restored"
        assert res.unknown_migrations == [] and res.pending_migrations == []
        assert migrate(target) == []  # the restored schema is at head

        restored = reading_keys(target)
        assert before <= restored, f"{len(before - restored)} readings committed before the backup are missing"
        assert restored <= after_backup
        assert tables(target) == expected
        with psycopg.connect(target) as conn:
            hypertables = {r[0] for r in conn.execute(
                "SELECT hypertable_name FROM timescaledb_information.hypertables")}
            assert {"readings", "readings_1m", "alarm_events"} <= hypertables
            assert conn.execute("SELECT current_setting('timescaledb.restoring')").fetchone() == ("off",)
            # the rollup came back with the raw data
            assert conn.execute("SELECT sum(count) FROM readings_1m").fetchone()[0] == len(restored)  # type: ignore[index]

        # The broker's password file was regenerated from the restored registry: the enabled gateways are in it,
        # the disabled one is denied every topic.
        passwd = new_broker.passwd.read_text()
        assert "gw-a1:$7$" in passwd and "gw-b1:$7$" in passwd and "gw-a-off" not in passwd
        assert "user gw-a-off\ntopic deny #" in new_broker.acl.read_text()

        # The restored service ingests again: the collector on the restored database and the new broker, the
        # gateway with the credentials it held before the backup.
        again = CollectorProcess(target, new_broker, tmp_path / "again")
        (tmp_path / "again").mkdir()
        again.extra_args = ["--catalog", str(CATALOG)]
        again.start()
        try:
            gw = GatewayPublisher("gw-b1", mini_site.credentials["gw-b1"], "127.0.0.1",
                                  new_broker.state.mqtt_port, tls=broker_tls(new_broker))
            gw.start()
            gw.publish_telemetry(["FT-301"], [42.5], [int(time.time() * 1000)])
            assert gw.wait_acked(20)
            gw.close()
            wait_for(lambda: sql_one(target, "SELECT count(*) FROM readings r JOIN points p ON p.id = r.point_id"
                                             " WHERE p.tag = 'FT-301' AND r.value = 42.5") == 1,
                     message="a reading stored in the restored database")
            # adversarial: a forged password is refused by the regenerated password file
            forged = GatewayPublisher("gw-b1", "not-the-password", "127.0.0.1", new_broker.state.mqtt_port,
                                      tls=broker_tls(new_broker))
            with pytest.raises((GatewayAuthError, GatewayError)):
                forged.start(timeout=5)
            forged.close()
            assert again.stop() == 0
        finally:
            if again.alive():
                again.kill()
    finally:
        new_broker.stop()


def test_restore_refuses_a_database_that_is_not_empty_and_replace_replaces_it(
    db_url: str, fresh_cluster: LocalPostgres, tmp_path: Path
) -> None:
    dump = tmp_path / "a.dump"
    backup(db_url, dump)
    target = fresh_cluster.url.rsplit("/", 1)[0] + "/busy"
    restore(target, dump)
    with psycopg.connect(target) as conn:
        conn.execute("INSERT INTO enterprises (id, name) VALUES ('ent-later', '后来的企业')")
    with pytest.raises(BackupError, match="not empty"):
        restore(target, dump)
    assert sql_one(target, "SELECT count(*) FROM enterprises WHERE id = 'ent-later'") == 1  # nothing touched
    restore(target, dump, replace=True)
    assert sql_one(target, "SELECT count(*) FROM enterprises WHERE id = 'ent-later'") == 0


def test_restore_refuses_files_that_are_not_riskwatch_backups(
    db_url: str, pg: LocalPostgres, fresh_cluster: LocalPostgres, tmp_path: Path
) -> None:
    target = fresh_cluster.url.rsplit("/", 1)[0] + "/victim"
    garbage = tmp_path / "garbage.dump"
    garbage.write_bytes(b"PGDMP" + os.urandom(4096))
    with pytest.raises(BackupError, match="not a riskwatch backup"):
        restore(target, garbage)
    with pytest.raises(BackupError, match="no such backup file"):
        restore(target, tmp_path / "missing.dump")
    # a real pg_dump archive of some other database
    other = pg.url.rsplit("/", 1)[0] + "/postgres"
    with pytest.raises(BackupError, match="not a riskwatch database"):
        backup(other, tmp_path / "other.dump")
    # truncated: the first half of a real backup
    good = tmp_path / "good.dump"
    backup(db_url, good)
    half = tmp_path / "half.dump"
    half.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(BackupError):
        restore(target, half)
    with psycopg.connect(fresh_cluster.url.rsplit("/", 1)[0] + "/postgres") as conn:
        made = conn.execute("SELECT 1 FROM pg_database WHERE datname = 'victim'").fetchone()
    if made:  # a failed restore is one transaction: nothing of it is left
        assert sql_one(target, "SELECT to_regclass('public.readings')") is None
        assert sql_one(target, "SELECT current_setting('timescaledb.restoring')") == "off"
    # and the same target takes the good backup afterwards, without --replace
    res = restore(target, good)
    assert res.pending_migrations == [] and sql_one(target, "SELECT count(*) FROM schema_migrations") == len(
        migrations())


def test_backup_keeps_the_password_off_the_command_line_and_out_of_errors(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess

    seen: list[list[str]] = []
    real = subprocess.run

    def spy(cmd: list[str], *a: object, **kw: object) -> object:
        seen.append(list(cmd))
        return real(cmd, *a, **kw)  # type: ignore[call-overload]

    monkeypatch.setattr(subprocess, "run", spy)
    password = psycopg.conninfo.conninfo_to_dict(db_url)["password"]
    backup(db_url, tmp_path / "x.dump")
    assert seen and all(str(password) not in " ".join(c) for c in seen)
    wrong = db_url.replace(str(password), "wrong-secret-1234")
    with pytest.raises(BackupError) as err:
        backup(wrong, tmp_path / "y.dump")
    assert "wrong-secret-1234" not in str(err.value)
