"""deploy/compose.yaml tells the truth (issue #11, item 10), read with PyYAML (docker compose is not available here).

- exactly one process runs the collector: `collect` commands plus `serve` commands without `--no-collector`;
- every published container port is the port the service listens on (its command's --port, Mosquitto's
  listener, Grafana's default);
- Mosquitto publishes 8883 only and its mounted config has a single TLS listener on 8883 (certfile, keyfile,
  `use_username_as_clientid true`), `allow_anonymous false`;
- riskwatch reaches it over `mqtts://…:8883?cafile=…` with that CA mounted read-only;
- RISKWATCH_PUBLIC_URL and RISKWATCH_LINK_SECRET are required (`${VAR:?message}`);
- the riskwatch image is built by a Dockerfile in this repository, whose entry point is `riskwatch`.

`check` returns the problems of a compose document, so the same checks also run against the compose file as
it was before this issue (tests/fixtures/compose_before_issue_11.yaml) and must find its faults there.
"""

from __future__ import annotations

import inspect
import json
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from api.cli import server as cli_server

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
REQUIRED = re.compile(r"^\$\{(?P<var>[A-Z0-9_]+):\?[^}]+\}$")
GRAFANA_DEFAULT_PORT = 3000


def _serve_default_port() -> int:
    return int(inspect.signature(cli_server.serve).parameters["port"].default)


def argv(service: dict[str, Any], image_entrypoint: list[str]) -> list[str]:
    """The process a service runs: entrypoint (the service's, else the image's) + command, as Docker joins them."""
    def words(v: Any) -> list[str]:
        if v is None:
            return []
        return shlex.split(v) if isinstance(v, str) else [str(x) for x in v]

    entry = words(service["entrypoint"]) if "entrypoint" in service else image_entrypoint
    return entry + words(service.get("command"))


def runs_riskwatch(args: list[str]) -> list[list[str]]:
    """Every riskwatch invocation in a process: direct, or inside `sh -c '...'` scripts."""
    if not args:
        return []
    if args[0] in ("sh", "bash") and "-c" in args:
        script = " ".join(args[args.index("-c") + 1:])
        return [shlex.split(part) for part in re.split(r"[;&|]+|\bdo\b|\bdone\b", script)
                if part.strip().startswith("riskwatch")]
    if Path(args[0]).name == "riskwatch":
        return [args]
    return []


def collectors(argvs: list[list[str]]) -> int:
    n = 0
    for a in argvs:
        sub = [w for w in a[1:] if not w.startswith("-")][:1]
        if sub == ["collect"] or (sub == ["serve"] and "--no-collector" not in a):
            n += 1
    return n


def published(service: dict[str, Any]) -> list[int]:
    """Container ports of `ports:` entries (short "host:container[/proto]" or long syntax)."""
    out = []
    for p in service.get("ports") or []:
        if isinstance(p, dict):
            out.append(int(p["target"]))
        else:
            out.append(int(str(p).split("/")[0].rsplit(":", 1)[-1]))
    return out


def mosquitto_conf(text: str) -> list[dict[str, Any]]:
    """Listeners of a mosquitto.conf with their options; index 0 holds the general options."""
    blocks: list[dict[str, Any]] = [{}]
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key, _, value = line.partition(" ")
        if key == "listener":
            blocks.append({"port": int(value.split()[0])})
        else:
            blocks[-1][key] = value.strip()
    return blocks


def dockerfile_entrypoint(text: str) -> list[str]:
    found = [ln for ln in text.splitlines() if ln.startswith("ENTRYPOINT")]
    assert found, "Dockerfile has no ENTRYPOINT"
    value = found[-1].removeprefix("ENTRYPOINT").strip()
    return json.loads(value) if value.startswith("[") else shlex.split(value)


def _mount_source(service: dict[str, Any], target: str) -> str | None:
    for v in service.get("volumes") or []:
        parts = str(v).split(":")
        if len(parts) >= 2 and parts[1] == target:
            return parts[0]
    return None


def check(compose: dict[str, Any], deploy: Path, root: Path) -> list[str]:
    """Every way this compose document would not do what it says (empty: none)."""
    problems: list[str] = []
    services: dict[str, dict[str, Any]] = compose["services"]
    ours = {n: s for n, s in services.items() if str(s.get("image", "")).startswith(("riskwatch", "${RISKWATCH"))}
    if not ours:
        return ["no service runs the riskwatch image"]

    # the image is built from this repository, and its entry point is riskwatch
    entry: list[str] = []
    for name, s in ours.items():
        build = s.get("build")
        if not isinstance(build, dict) or "dockerfile" not in build:
            problems.append(f"{name}: image {s.get('image')} is not built here (no build.dockerfile)")
            continue
        dockerfile = (deploy / build.get("context", ".") / build["dockerfile"]).resolve()
        if not dockerfile.is_file() or root not in dockerfile.parents:
            problems.append(f"{name}: {dockerfile} is not a file of the repository")
            continue
        entry = dockerfile_entrypoint(dockerfile.read_text(encoding="utf-8"))
        if [Path(w).name for w in entry] != ["riskwatch"]:
            problems.append(f"{dockerfile.name}: ENTRYPOINT {entry}, want riskwatch")

    # exactly one collector
    procs = {n: runs_riskwatch(argv(s, entry)) for n, s in ours.items()}
    n_collectors = sum(collectors(p) for p in procs.values())
    if n_collectors != 1:
        problems.append(f"{n_collectors} processes run the collector ({procs}); want exactly one")

    # published ports are the ones listened on
    conf_text = None
    for name, s in services.items():
        ports = published(s)
        if not ports:
            continue
        if name in ours:
            listens = set()
            for a in procs[name]:
                if "serve" in a:
                    listens.add(int(a[a.index("--port") + 1]) if "--port" in a else _serve_default_port())
        elif "mosquitto" in str(s.get("image")):
            src = _mount_source(s, "/mosquitto/config/mosquitto.conf")
            path = deploy / src if src else None
            if path is not None and not path.exists():
                path = path.with_name(path.name + ".example")  # copied from the example by the operator
            if path is None or not path.exists():
                problems.append(f"{name}: no mosquitto.conf mounted at /mosquitto/config/mosquitto.conf")
                continue
            conf_text = path.read_text(encoding="utf-8")
            listens = {b["port"] for b in mosquitto_conf(conf_text)[1:]}
        elif "grafana" in str(s.get("image")):
            listens = {int((s.get("environment") or {}).get("GF_SERVER_HTTP_PORT", GRAFANA_DEFAULT_PORT))}
        else:
            listens = set()
        for port in ports:
            if port not in listens:
                problems.append(f"{name}: publishes container port {port}, but it listens on {sorted(listens)}")

    # Mosquitto: 8883 only, TLS, client id = username, no anonymous
    broker = next((s for s in services.values() if "mosquitto" in str(s.get("image"))), None)
    if broker is None:
        problems.append("no mosquitto service")
    else:
        if published(broker) != [8883]:
            problems.append(f"mosquitto publishes {published(broker)}, want [8883] only")
        if conf_text is not None:
            general, *listeners = mosquitto_conf(conf_text)
            if [b["port"] for b in listeners] != [8883]:
                problems.append(f"mosquitto.conf listeners {[b['port'] for b in listeners]}, want 8883 alone")
            for b in listeners:
                for key in ("certfile", "keyfile", "cafile"):
                    if key not in b:
                        problems.append(f"mosquitto.conf listener {b['port']}: no {key} (not TLS)")
                if b.get("use_username_as_clientid") != "true":
                    problems.append(f"mosquitto.conf listener {b['port']}: use_username_as_clientid is not true")
            everything = {k: v for blk in [general, *listeners] for k, v in blk.items()}
            if everything.get("allow_anonymous") != "false":
                problems.append("mosquitto.conf: allow_anonymous is not false")
            for key in ("password_file", "acl_file"):
                if key not in everything:
                    problems.append(f"mosquitto.conf: no {key}")

    # riskwatch's environment: TLS to the broker with a mounted CA; public URL and link secret required
    for name, s in ours.items():
        env = s.get("environment") or {}
        for var in ("RISKWATCH_PUBLIC_URL", "RISKWATCH_LINK_SECRET"):
            m = REQUIRED.match(str(env.get(var, "")))
            if not m or m.group("var") != var:
                problems.append(f"{name}: {var} is {env.get(var)!r}, want the required form ${{{var}:?message}}")
        mqtt = urlsplit(re.sub(r"\$\{[^}]+\}", "x", str(env.get("RISKWATCH_MQTT_URL", ""))))
        cafile = parse_qs(mqtt.query).get("cafile", [""])[0]
        if mqtt.scheme != "mqtts" or mqtt.port != 8883 or not cafile:
            problems.append(f"{name}: RISKWATCH_MQTT_URL is not mqtts://…:8883?cafile=…: "
                            f"{env.get('RISKWATCH_MQTT_URL')}")
        else:
            mounts = [str(v) for v in s.get("volumes") or []]
            if not any(v.split(":")[1:3] == [cafile, "ro"] for v in mounts):
                problems.append(f"{name}: the broker's CA {cafile} is not mounted read-only")
    return problems


def test_compose_file_is_true() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    assert check(compose, DEPLOY, ROOT) == []
    assert "collector" not in compose["services"]  # serve runs it


def test_the_checks_find_what_was_wrong_with_the_compose_file_before_issue_11() -> None:
    """tests/fixtures/compose_before_issue_11.yaml is deploy/compose.yaml as the review found it."""
    old = yaml.safe_load((ROOT / "tests/fixtures/compose_before_issue_11.yaml").read_text(encoding="utf-8"))
    problems = "\n".join(check(old, DEPLOY, ROOT))
    assert "is not built here" in problems                     # an image no file in the repository builds
    assert "2 processes run the collector" in problems         # `collect` and `serve`, one client id
    assert "publishes container port 8000, but it listens on [8080]" in problems
    assert "RISKWATCH_PUBLIC_URL" in problems                  # e-mailed links pointed at 127.0.0.1
    assert "RISKWATCH_LINK_SECRET" in problems
    assert "RISKWATCH_MQTT_URL is not mqtts" in problems       # plain MQTT


def test_the_image_runs_riskwatch_as_a_non_root_user_with_a_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)
    assert re.search(r"^RUN pip install \.", text, re.M)  # the project, from this repository
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*healthz|RISKWATCH_HEALTHCHECK_URL=\S*/healthz", text, re.M | re.S)
    assert dockerfile_entrypoint(text) == ["riskwatch"]
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".git", ".venv", ".riskwatch", "deploy", "tests"} <= set(ignored)  # no secrets or state in the image
    # everything the package is built from is copied in
    import tomllib
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    for pattern in packages["include"]:
        assert f"COPY {pattern.rstrip('*')} ./{pattern.rstrip('*')}" in text, pattern


def test_the_mosquitto_example_has_an_optional_mutual_tls_block_commented_out() -> None:
    text = (DEPLOY / "mosquitto/mosquitto.conf.example").read_text(encoding="utf-8")
    commented = [ln.lstrip("#").strip() for ln in text.splitlines() if ln.startswith("#")]
    assert "require_certificate true" in commented and "use_identity_as_username true" in commented
    general, listener = mosquitto_conf(text)
    assert "tls_version" not in general  # listener options belong after the `listener` line they apply to
    assert listener["port"] == 8883 and listener["tls_version"] == "tlsv1.2"
    everything = {**general, **listener}  # global options may come anywhere (per_listener_settings false)
    assert everything["per_listener_settings"] == "false"
    assert everything["persistence"] == "true" and "autosave_interval" in everything
