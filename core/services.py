"""Private local services under the data dir: PostgreSQL+TimescaleDB and Mosquitto.

`riskwatch services up|down|status` and the test fixtures both use this module,
so tests can stop, kill and restart each service to inject faults.

PostgreSQL refuses to run as root; when we are root the cluster runs as the
`postgres` system user in a directory it can reach (the data dir may sit under
a private 0700 directory), recorded in the state file.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import logging
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from core.errors import ServiceError
from core.reserved import RESERVED_PREFIX as RESERVED_PREFIX  # re-exported (core.registry, callers)
from core.reserved import reserved_user as reserved_user
from core.settings import MqttUrl
from core.tls import PrivateCA, write_private

COLLECTOR_USER = "riskwatch-collector"
#: The account /healthz logs in with: a login of its own, because the broker binds client ids to usernames
#: (`use_username_as_clientid`) and a health check under the collector's name would take over its session.
HEALTH_USER = "riskwatch-health"
#: The account `serve` bridges HTTP ingest (POST /api/v1/ingest, issue 18) onto the broker with: it writes
#: rw/v1/+/telemetry for the gateway a token belongs to and reads the collector's rw/v1/+/stored, nothing else.
BRIDGE_USER = "riskwatch-http-bridge"
MQTT_ITERATIONS = 10_000

log = logging.getLogger("riskwatch.services")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); look at its state.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def mosquitto_hash(password: str, iterations: int = MQTT_ITERATIONS) -> str:
    """A Mosquitto 2 password-file hash ($7$: PBKDF2-SHA512)."""
    salt = secrets.token_bytes(12)
    dk = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(dk).decode()}"


def mosquitto_verify(password: str, stored: str) -> bool:
    try:
        _, seven, iters, salt_b64, hash_b64 = stored.split("$")
    except ValueError:
        return False
    if seven != "7":
        return False
    dk = hashlib.pbkdf2_hmac("sha512", password.encode(), base64.b64decode(salt_b64), int(iters))
    return secrets.compare_digest(base64.b64encode(dk).decode(), hash_b64)


@dataclass
class ServicesState:
    """What `up` chose, kept in <data_dir>/services.json (mode 0600)."""

    pg_dir: str
    pg_port: int
    pg_password: str
    mqtt_port: int  # the TLS listener (server certificate, password login)
    collector_password: str
    health_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    bridge_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))  # BRIDGE_USER (HTTP ingest)
    mqtt_mtls_port: int = 0  # the mutual-TLS listener (client certificate CN = gateway id); 0: none
    # Collector accounts: riskwatch-collector, then riskwatch-collector-2 … -N for a group (ingest.leases).
    collector_instances: int = 1

    @classmethod
    def load(cls, path: Path) -> ServicesState | None:
        if not path.exists():
            return None
        raw = json.loads(path.read_text())
        known = {f.name for f in fields(cls)}
        state = cls(**{k: v for k, v in raw.items() if k in known})
        if "bridge_password" not in raw:
            # A record from before HTTP ingest (issue 18): keep the password chosen now, or every process would
            # pick its own and the broker's password file would disagree with serve's bridge login.
            state.save(path)
        return state

    def save(self, path: Path) -> None:
        write_private(path, json.dumps(asdict(self), indent=2).encode())


def _is_root() -> bool:
    return os.geteuid() == 0


def _run(cmd: list[str], *, as_postgres: bool = False, check: bool = True, timeout: float = 120) -> str:
    if as_postgres and _is_root():
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError as exc:
        raise ServiceError(f"{cmd[0]} not found: run scripts/bootstrap") from exc
    if check and res.returncode != 0:
        raise ServiceError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip() or res.stdout.strip()}")
    return res.stdout


def pg_bindir() -> Path:
    base = Path("/usr/lib/postgresql")
    majors = sorted((int(p.name) for p in base.glob("*") if p.name.isdigit()), reverse=True) if base.exists() else []
    for m in majors:
        if (base / str(m) / "bin" / "initdb").exists():
            return base / str(m) / "bin"
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise ServiceError("PostgreSQL server binaries not found: run scripts/bootstrap")


class LocalPostgres:
    """A private PostgreSQL cluster with TimescaleDB preloaded, loopback only."""

    user = "riskwatch"
    database = "riskwatch"

    def __init__(self, data_dir: Path, state: ServicesState):
        self.data_dir = data_dir
        self.state = state
        self.dir = Path(state.pg_dir)
        self.bindir = pg_bindir()

    @property
    def url(self) -> str:
        return (
            f"postgresql://{self.user}:{self.state.pg_password}@127.0.0.1:{self.state.pg_port}/{self.database}"
        )

    @property
    def pgdata(self) -> Path:
        return self.dir / "data"

    @property
    def logfile(self) -> Path:
        return self.dir / "postgres.log"

    def initialised(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists()

    def init(self) -> None:
        if self.initialised():
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        if _is_root():
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        os.chmod(self.dir, 0o700)
        pwfile = self.dir / "pwfile"
        pwfile.write_text(self.state.pg_password + "\n")
        if _is_root():
            os.chown(pwfile, pwd.getpwnam("postgres").pw_uid, -1)
        os.chmod(pwfile, 0o600)
        try:
            _run(
                [str(self.bindir / "initdb"), "-D", str(self.pgdata), "-U", self.user, f"--pwfile={pwfile}",
                 "--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8"],
                as_postgres=True,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        conf = self.pgdata / "postgresql.conf"
        with conf.open("a") as f:
            f.write(
                "\n# riskwatch private instance\n"
                "listen_addresses = '127.0.0.1'\n"
                "shared_preload_libraries = 'timescaledb'\n"
                "timescaledb.telemetry_level = off\n"
                "max_connections = 100\n"
                "shared_buffers = 256MB\n"
                "max_wal_size = 2GB\n"
                "checkpoint_timeout = 15min\n"
                "log_min_messages = warning\n"
                "log_min_error_statement = panic\n"
                "timezone = 'UTC'\n"
            )

    def running(self) -> bool:
        pidfile = self.pgdata / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return False
        return pid_alive(pid)

    def pid(self) -> int | None:
        try:
            return int((self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def start(self) -> None:
        if self.running():
            return
        if port_open(self.state.pg_port):
            raise ServiceError(f"port {self.state.pg_port} is taken by another process")
        _run(
            [str(self.bindir / "pg_ctl"), "-D", str(self.pgdata), "-l", str(self.logfile), "-w", "-t", "60",
             "-o", f"-p {self.state.pg_port} -k {self.dir}", "start"],
            as_postgres=True,
        )
        self._ensure_database()

    def _ensure_database(self) -> None:
        import psycopg

        admin = f"postgresql://{self.user}:{self.state.pg_password}@127.0.0.1:{self.state.pg_port}/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{self.database}"')

    def stop(self, mode: str = "fast") -> None:
        if not self.running():
            return
        _run([str(self.bindir / "pg_ctl"), "-D", str(self.pgdata), "-m", mode, "-w", "-t", "60", "stop"],
             as_postgres=True)

    def kill(self) -> None:
        """SIGKILL the postmaster (fault injection); children exit on their own."""
        pid = self.pid()
        if pid and pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)


@dataclass(frozen=True)
class BrokerAuth:
    """A Mosquitto password file and ACL, as text."""

    passwd: str
    acl: str
    refused: list[str]


def collector_users(base: str = COLLECTOR_USER, instances: int = 1) -> list[str]:
    """The collector logins: `base`, then `base-2` … `base-N` for the members of a group."""
    return [base] + [f"{base}-{i}" for i in range(2, max(1, instances) + 1)]


def render_auth(gateways: list[tuple[str, str]], collector_hash: str, health_hash: str | None = None,
                collector_user: str = COLLECTOR_USER, disabled: list[str] | tuple[str, ...] = (),
                collector_instances: int = 1, bridge_hash: str | None = None) -> BrokerAuth:
    """The password file and ACL for these gateways (id, `$7$` hash) and the service's own accounts.

    The service's accounts come first and only once; a gateway id that is reserved (it starts with `riskwatch`,
    or `$`), malformed for the file format, or repeated is left out and logged — the file never holds two lines
    for one user. Gateways may publish only below rw/v1/{their id}/ and read only rw/v1/{their id}/cmd/# and
    rw/v1/{their id}/stored; as Sparkplug B edge nodes they publish only with their id as the edge node id and
    read only their own NCMD/DCMD and the host STATE (a `pattern`, since a `topic` line would belong to the
    `user` above it). The collector reads everything below rw/v1/ and spBv1.0/, writes rw/v1/+/stored, the
    Sparkplug commands and its STATE spBv1.0/STATE/riskwatch; the health account may do nothing but log in.
    A `disabled` gateway has no password line and is denied every topic, so a client certificate it still holds
    (mutual TLS, where the certificate is the login) lets it publish nothing.
    """
    # Several collectors (ingest.leases) need one login each, since the broker binds client ids to usernames:
    # riskwatch-collector-2 … -N, same password and rights; reserved ids, so no gateway can take one.
    users = collector_users(collector_user, collector_instances)
    lines = [f"{u}:{collector_hash}" for u in users]
    acl = ["# generated by riskwatch from the registry"]
    for u in users:
        acl += [f"user {u}", "topic read rw/v1/#", "# end-to-end confirmation: the highest seq stored per gateway "
                "(retained)", "topic write rw/v1/+/stored",
                "# Sparkplug B host application (docs/sparkplug.md): every edge node's messages, rebirth requests "
                "and device commands, riskwatch's own STATE",
                "topic read spBv1.0/#", "topic write spBv1.0/+/NCMD/+", "topic write spBv1.0/+/DCMD/+/+",
                "topic write spBv1.0/STATE/riskwatch", ""]
    if health_hash is not None:
        lines.append(f"{HEALTH_USER}:{health_hash}")
        acl += [f"user {HEALTH_USER}", ""]
    if bridge_hash is not None:
        # HTTP ingest (api.http.ingest_bridge): publishes a gateway's body on its telemetry topic, waits for the
        # collector's confirmation. Never a gateway's cmd/status, never anything outside rw/v1/.
        lines.append(f"{BRIDGE_USER}:{bridge_hash}")
        acl += [f"user {BRIDGE_USER}", "topic write rw/v1/+/telemetry", "topic read rw/v1/+/stored", ""]
    seen: set[str] = set()
    refused: list[str] = []
    for gw, h in sorted(gateways):
        if (reserved_user(gw) or gw in users or gw in seen or not gw
                or any(c in gw for c in ":\n\r \t/+#") or "\n" in h or not h.startswith("$7$")):
            refused.append(gw)
            continue
        seen.add(gw)
        lines.append(f"{gw}:{h}")
    if refused:
        log.warning("broker password file: left out reserved, malformed or repeated ids %s", sorted(set(refused)))
    for gw in sorted(set(disabled)):
        if gw and not any(c in gw for c in "\n\r \t"):
            acl += [f"user {gw}", "topic deny #", ""]
    acl += ["# every gateway: its own subtree only (username = gateway id = client id)",
            "pattern write rw/v1/%u/#", "pattern read rw/v1/%u/cmd/#", "pattern read rw/v1/%u/stored",
            "# Sparkplug B edge node = gateway: node and device messages with its id as edge node id (any group),",
            "# commands to it, and the host applications' STATE",
            "pattern write spBv1.0/+/+/%u", "pattern write spBv1.0/+/+/%u/+", "pattern read spBv1.0/+/NCMD/%u",
            "pattern read spBv1.0/+/DCMD/%u/+", "pattern read spBv1.0/STATE/+"]
    return BrokerAuth("\n".join(lines) + "\n", "\n".join(acl) + "\n", refused)


class LocalMosquitto:
    """A private Mosquitto: TLS only, password file and ACL from the registry, client id bound to the username.

    Listeners (loopback): `mqtt_port` — TLS with the private CA's server certificate and a password login;
    `mqtt_mtls_port` (when set) — mutual TLS, the client certificate's CN is the username (a gateway id), no
    password. There is no plain-TCP listener. `use_username_as_clientid` makes every client's id its username, so
    no credential can take over another client's session (the collector's above all). Anonymous access is off.
    """

    def __init__(self, data_dir: Path, state: ServicesState):
        self.state = state
        self.dir = data_dir / "mosquitto"
        self.ca = PrivateCA(self.dir / "tls")
        self._lock = threading.Lock()
        self.restarts = 0  # by `watch`
        self.last_restart_at: float | None = None

    @property
    def conf(self) -> Path:
        return self.dir / "mosquitto.conf"

    @property
    def passwd(self) -> Path:
        return self.dir / "passwd"

    @property
    def acl(self) -> Path:
        return self.dir / "acl"

    @property
    def pidfile(self) -> Path:
        return self.dir / "mosquitto.pid"

    @property
    def logfile(self) -> Path:
        return self.dir / "mosquitto.log"

    @property
    def cafile(self) -> Path:
        return self.ca.ca_cert

    def url(self, user: str = COLLECTOR_USER, password: str | None = None) -> str:
        """`mqtts://user:pass@127.0.0.1:port?cafile=…` (the collector's account unless told otherwise)."""
        if password is None:
            password = {HEALTH_USER: self.state.health_password,
                        BRIDGE_USER: self.state.bridge_password}.get(user, self.state.collector_password)
        return MqttUrl(host="127.0.0.1", port=self.state.mqtt_port, username=user, password=password, tls=True,
                       cafile=str(self.cafile)).url()

    def mtls_url(self, certfile: Path, keyfile: Path) -> str:
        """The mutual-TLS listener's URL for a client certificate (no username: the CN is the username)."""
        if not self.state.mqtt_mtls_port:
            raise ServiceError("the private broker has no mutual-TLS listener (services up --mtls)")
        return MqttUrl(host="127.0.0.1", port=self.state.mqtt_mtls_port, tls=True, cafile=str(self.cafile),
                       certfile=str(certfile), keyfile=str(keyfile)).url()

    def write_config(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "data").mkdir(exist_ok=True)
        self.ca.ensure(["127.0.0.1", "localhost"])
        user = pwd.getpwuid(os.geteuid()).pw_name
        tls = (f"cafile {self.ca.ca_cert}\n"
               f"certfile {self.ca.server_cert}\n"
               f"keyfile {self.ca.server_key}\n"
               "tls_version tlsv1.2\n"
               # A client's id is its username: nobody can take over another client's (the collector's) session.
               # A listener option: set before any `listener` line it would open a default listener on 1883.
               "use_username_as_clientid true\n")
        mtls = ""
        if self.state.mqtt_mtls_port:
            mtls = (f"\n# mutual TLS: the client certificate (signed by the private CA) is the login; CN = gateway id\n"
                    f"listener {self.state.mqtt_mtls_port} 127.0.0.1\n{tls}"
                    "require_certificate true\n"
                    "use_identity_as_username true\n")
        text = (
            "# generated by riskwatch; edits are overwritten by `riskwatch services up`\n"
            f"user {user}\n"
            f"pid_file {self.pidfile}\n"
            "per_listener_settings false\n"
            "allow_anonymous false\n"
            f"password_file {self.passwd}\n"
            f"acl_file {self.acl}\n"
            "\n# TLS with the private CA's server certificate; password login\n"
            f"listener {self.state.mqtt_port} 127.0.0.1\n{tls}"
            f"{mtls}\n"
            "persistence true\n"
            f"persistence_location {self.dir / 'data'}/\n"
            # save after every 100 changes, not every 30 s: a SIGKILL loses at most the last ~100 changes
            # (acknowledged messages, a new subscription); 20k QoS1 msgs: 9.4-10k/s vs ~10k/s (issue 15)
            "autosave_on_changes true\nautosave_interval 100\n"
            # Lossless QoS1 at speed: a large in-flight window so a collector that
            # acknowledges after commit does not stall, deep queues for offline
            # persistent sessions, no Nagle delay on small acks.
            "max_inflight_messages 1000\n"
            "max_queued_messages 1000000\n"
            "max_queued_bytes 0\n"
            "max_packet_size 1048576\n"
            "set_tcp_nodelay true\n"
            "persistent_client_expiration 14d\n"
            f"log_dest file {self.logfile}\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
            "connection_messages true\n"
        )
        write_private(self.conf, text.encode())
        if not self.passwd.exists():
            self.write_auth([])

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time, in this process (threads of the API) and across processes (CLI, serve)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with self._lock, open(self.dir / ".auth.lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def write_auth(self, gateways: list[tuple[str, str]], *, reload: bool = False,
                   disabled: list[str] | tuple[str, ...] = ()) -> list[str]:
        """Regenerate the password file and ACL from (gateway_id, mosquitto hash) pairs; returns the ids refused.

        Both files are written under unique temporary names with mode 0600 from the start and renamed into
        place; concurrent writers are serialised, and `reload` SIGHUPs the broker inside the same lock.
        """
        auth = render_auth(gateways, mosquitto_hash(self.state.collector_password),
                           mosquitto_hash(self.state.health_password), disabled=disabled,
                           collector_instances=self.state.collector_instances,
                           bridge_hash=mosquitto_hash(self.state.bridge_password))
        with self._locked():
            write_private(self.passwd, auth.passwd.encode())
            write_private(self.acl, auth.acl.encode())
            if reload:
                self.reload()
        return auth.refused

    def pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def running(self) -> bool:
        return pid_alive(self.pid())

    def start(self) -> None:
        if self.running():
            return
        if port_open(self.state.mqtt_port):
            raise ServiceError(f"port {self.state.mqtt_port} is taken by another process")
        self.write_config()
        _run(["mosquitto", "-c", str(self.conf), "-d"])
        ports = [self.state.mqtt_port] + ([self.state.mqtt_mtls_port] if self.state.mqtt_mtls_port else [])
        deadline = time.monotonic() + 15
        while not all(port_open(p) for p in ports):
            if time.monotonic() > deadline:
                log_tail = self.logfile.read_text()[-2000:] if self.logfile.exists() else ""
                raise ServiceError(f"mosquitto did not start on port {self.state.mqtt_port}: {log_tail}")
            time.sleep(0.05)

    def reload(self) -> None:
        """SIGHUP: re-read the password file and ACL."""
        pid = self.pid()
        if pid and pid_alive(pid):
            os.kill(pid, signal.SIGHUP)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        pid = self.pid()
        if not pid or not pid_alive(pid):
            return
        os.kill(pid, sig)
        deadline = time.monotonic() + 15
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)

    def watch(self, stop: threading.Event, interval_s: float = 1.0) -> None:
        """Keep the broker running until `stop` is set: a broker that died (Mosquitto 2.0.11 has been seen to
        segfault while its password file was reloaded) is started again with its persistence; `restarts`
        counts it for /healthz."""
        while not stop.wait(interval_s):
            if self.running():
                continue
            log.error("private mosquitto (pid %s) is not running; starting it again", self.pid())
            try:
                self.start()
            except ServiceError as exc:
                log.error("could not restart mosquitto: %s", exc)
                continue
            self.restarts += 1
            self.last_restart_at = time.time()


class LocalServices:
    """Both private services for one data dir."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.state_path = data_dir / "services.json"
        state = ServicesState.load(self.state_path)
        if state is None:
            if _is_root():
                digest = hashlib.sha1(str(data_dir.resolve()).encode()).hexdigest()[:12]
                pg_dir = f"/var/tmp/riskwatch-pg/{digest}"
            else:
                pg_dir = str(data_dir / "pg")
            state = ServicesState(
                pg_dir=pg_dir,
                pg_port=free_port(),
                pg_password=secrets.token_urlsafe(18),
                mqtt_port=free_port(),
                collector_password=secrets.token_urlsafe(18),
                mqtt_mtls_port=free_port(),
            )
        self.state = state
        self.pg = LocalPostgres(data_dir, state)
        self.mqtt = LocalMosquitto(data_dir, state)

    def up(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if _is_root():
            parent = Path(self.state.pg_dir).parent
            parent.mkdir(parents=True, exist_ok=True)
            os.chmod(parent, 0o755)
        # A port taken while we were down: choose another before starting.
        if not self.pg.running() and port_open(self.state.pg_port):
            self.state.pg_port = free_port()
        if not self.mqtt.running() and port_open(self.state.mqtt_port):
            self.state.mqtt_port = free_port()
        if not self.mqtt.running() and (not self.state.mqtt_mtls_port or port_open(self.state.mqtt_mtls_port)):
            self.state.mqtt_mtls_port = free_port()
        self.state.save(self.state_path)
        self.pg.init()
        self.pg.start()
        self.mqtt.start()

    def down(self) -> None:
        self.mqtt.stop()
        self.pg.stop()

    def status(self) -> dict[str, bool]:
        return {"postgres": self.pg.running(), "mosquitto": self.mqtt.running()}

    @property
    def db_url(self) -> str:
        return self.pg.url

    @property
    def mqtt_url(self) -> str:
        return self.mqtt.url()

    @property
    def mqtt_health_url(self) -> str:
        return self.mqtt.url(HEALTH_USER)

    def destroy(self) -> None:
        """Stop both and remove their files (test teardown)."""
        self.down()
        shutil.rmtree(self.state.pg_dir, ignore_errors=True)
        shutil.rmtree(self.mqtt.dir, ignore_errors=True)
        self.state_path.unlink(missing_ok=True)
