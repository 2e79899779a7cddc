"""Private local services under the data dir: PostgreSQL+TimescaleDB and Mosquitto.

`riskwatch services up|down|status` and the test fixtures both use this module,
so tests can stop, kill and restart each service to inject faults.

PostgreSQL refuses to run as root; when we are root the cluster runs as the
`postgres` system user in a directory it can reach (the data dir may sit under
a private 0700 directory), recorded in the state file.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from core.errors import ServiceError

COLLECTOR_USER = "riskwatch-collector"
MQTT_ITERATIONS = 10_000


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
    mqtt_port: int
    collector_password: str

    @classmethod
    def load(cls, path: Path) -> ServicesState | None:
        if not path.exists():
            return None
        return cls(**json.loads(path.read_text()))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        os.chmod(tmp, 0o600)
        tmp.replace(path)


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


class LocalMosquitto:
    """A private Mosquitto with persistence, password file and ACL; anonymous refused."""

    def __init__(self, data_dir: Path, state: ServicesState):
        self.state = state
        self.dir = data_dir / "mosquitto"

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

    def url(self, user: str = COLLECTOR_USER, password: str | None = None) -> str:
        pw = self.state.collector_password if password is None else password
        return f"mqtt://{user}:{pw}@127.0.0.1:{self.state.mqtt_port}"

    def write_config(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "data").mkdir(exist_ok=True)
        user = pwd.getpwuid(os.geteuid()).pw_name
        self.conf.write_text(
            "# generated by riskwatch; edits are overwritten by `riskwatch services up`\n"
            f"user {user}\n"
            f"pid_file {self.pidfile}\n"
            "per_listener_settings false\n"
            f"listener {self.state.mqtt_port} 127.0.0.1\n"
            "allow_anonymous false\n"
            f"password_file {self.passwd}\n"
            f"acl_file {self.acl}\n"
            "persistence true\n"
            f"persistence_location {self.dir / 'data'}/\n"
            "autosave_interval 30\n"
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
        if not self.passwd.exists():
            self.write_auth([])

    def write_auth(self, gateways: list[tuple[str, str]]) -> None:
        """Regenerate the password file and ACL: (gateway_id, mosquitto hash) pairs.

        Gateways may publish and read only below rw/v1/{their id}/; the collector
        reads everything below rw/v1/.
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        lines = [f"{COLLECTOR_USER}:{mosquitto_hash(self.state.collector_password)}"]
        lines += [f"{gw}:{h}" for gw, h in sorted(gateways)]
        tmp = self.passwd.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        os.chmod(tmp, 0o600)
        tmp.replace(self.passwd)
        acl = (
            "# generated by riskwatch from the registry\n"
            f"user {COLLECTOR_USER}\n"
            "topic read rw/v1/#\n"
            "\n"
            "# every gateway: its own subtree only (username = gateway id)\n"
            "pattern write rw/v1/%u/#\n"
            "pattern read rw/v1/%u/cmd/#\n"
        )
        tmp = self.acl.with_suffix(".tmp")
        tmp.write_text(acl)
        os.chmod(tmp, 0o600)
        tmp.replace(self.acl)

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
        deadline = time.monotonic() + 15
        while not port_open(self.state.mqtt_port):
            if time.monotonic() > deadline:
                log = self.logfile.read_text()[-2000:] if self.logfile.exists() else ""
                raise ServiceError(f"mosquitto did not start on port {self.state.mqtt_port}: {log}")
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

    def destroy(self) -> None:
        """Stop both and remove their files (test teardown)."""
        self.down()
        shutil.rmtree(self.state.pg_dir, ignore_errors=True)
        shutil.rmtree(self.mqtt.dir, ignore_errors=True)
        self.state_path.unlink(missing_ok=True)
