"""The environment a routing file needs: every `${NAME}` of its channels, with the line that names it.

`riskwatch alerting check` lists every variable that is unset (or empty: a blank `VAR=` in an env file is
no secret, and `expand_secret` refuses it too) at once, each with its file and line, before validating
the rest. Loading stops at the first reference of each channel; an operator filling in an env file wants
the whole list.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alerting.channels.base import _ENV_REF
from core import yamlsrc

__all__ = ["EnvRef", "env_refs", "missing"]


@dataclass(frozen=True)
class EnvRef:
    """One `${NAME}` in a routing file: the variable, where it is, and which setting it fills."""

    name: str
    path: str
    line: int | None
    setting: str  # dotted, e.g. channels.email.password


def _walk(value: Any, loc: tuple[Any, ...], out: list[tuple[tuple[Any, ...], str]]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _walk(v, (*loc, k), out)
    elif isinstance(value, str):
        m = _ENV_REF.match(value.strip())
        if m:
            out.append((loc, m.group(1)))


def env_refs(path: str | Path, text: str | None = None) -> list[EnvRef]:
    """Every `${NAME}` the channels of a routing file read, in file order (YAML errors raise SourceError)."""
    data, lines = yamlsrc.load(path, text)
    channels = data.get("channels") if isinstance(data, dict) else None
    found: list[tuple[tuple[Any, ...], str]] = []
    if isinstance(channels, dict):
        for name, cfg in channels.items():
            if isinstance(cfg, dict):  # expand_secret reads every value of a channel and of its mappings
                _walk(cfg, ("channels", name), found)
    refs = [EnvRef(var, str(path), yamlsrc.line_for(lines, loc), ".".join(str(p) for p in loc)) for loc, var in found]
    return sorted(refs, key=lambda r: (r.line or 0, r.setting))


def missing(refs: list[EnvRef], environ: Mapping[str, str]) -> list[tuple[EnvRef, str]]:
    """The references whose variable is unset or empty, with which of the two."""
    out = []
    for r in refs:
        value = environ.get(r.name)
        if value is None:
            out.append((r, "unset"))
        elif value == "":
            out.append((r, "empty"))
    return out
