"""requirements.lock stays the truth about what is installed (issue 16): every dependency pyproject.toml names
is pinned in it with hashes, the runtime lock agrees with it, and the packages that broke the environment
(grafana-client's urllib3-future) are not in it. A pyproject edit without `scripts/lock` fails here."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)(?:\s*;\s*([^\\]+?))?\s*\\?$", re.M)


def pins(path: Path) -> dict[str, list[tuple[str, str]]]:
    """name -> [(version, marker)] (a universal lock may pin one package twice, under exclusive markers)."""
    out: dict[str, list[tuple[str, str]]] = {}
    for m in PIN.finditer(path.read_text(encoding="utf-8")):
        out.setdefault(canonicalize_name(m.group(1)), []).append((m.group(2), (m.group(3) or "").strip()))
    return out


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]]


def test_every_declared_dependency_is_pinned_within_its_range() -> None:
    locked = pins(ROOT / "requirements.lock")
    for req in declared():
        name = canonicalize_name(req.name)
        assert name in locked, f"{req.name} is in pyproject.toml but not in requirements.lock: run scripts/lock"
        for version, _marker in locked[name]:
            assert req.specifier.contains(Version(version), prereleases=True), \
                f"{req.name}=={version} in requirements.lock is outside pyproject's {req.specifier}: run scripts/lock"


def test_every_pin_has_hashes() -> None:
    text = (ROOT / "requirements.lock").read_text(encoding="utf-8")
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 3)[-1])
    for block in blocks:
        if PIN.match(block.splitlines()[0] if block else ""):
            assert "--hash=sha256:" in block, block.splitlines()[0]


def test_runtime_lock_matches_the_full_lock() -> None:
    full = pins(ROOT / "requirements.lock")
    runtime = pins(ROOT / "requirements-runtime.lock")
    for name, versions in runtime.items():
        assert set(versions) <= set(full[name]), f"{name}: runtime {versions} vs full {full[name]}"
    dev_only = {canonicalize_name(r) for r in ("pytest", "mypy", "ruff", "playwright", "schemathesis")}
    assert not dev_only & set(runtime)


def test_packages_that_broke_the_environment_stay_out() -> None:
    locked = pins(ROOT / "requirements.lock")
    assert "grafana-client" not in locked and "urllib3-future" not in locked and "niquests" not in locked
    assert "setuptools" in locked  # the build backend of the editable install is pinned too
