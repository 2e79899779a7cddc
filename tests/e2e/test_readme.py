"""The README's every command, copied as written, works (issue 16).

Two kinds of tests, both reading README.md at test time so that an edit of the README is tested:

- *Every command exists*: each `riskwatch` line of a shell block (its documented alternatives
  `a | b`, `x|y`, `[--opt]`, trailing comments) and each inline `riskwatch …` span names commands
  and options that the Typer app has; `make` targets exist in the Makefile; repository paths exist.
- *Copied as written, they work*: the literal lines (no placeholder, or a placeholder replaced by a
  value the walk owns, e.g. DIR) run through `bash -c` exactly as printed, in order, in a throwaway
  directory that looks like a clone, and print what the README says they print.

A literal README line that is neither walked nor listed in NOT_RUN (with the reason) fails the test:
a new command in the README has to be tried here.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import typer

from api.cli.main import app
from core.services import LocalServices
from tests.conftest import ROOT

README = ROOT / "README.md"
SHELL_LANGS = {"sh", "bash", "shell", "console"}
REPO_PATH = re.compile(r"^(?:deploy|simulators|rules|scripts|docs|tests|api|core|ingest|alerting|hazards)/\S*$")
WORD = re.compile(r"^[a-z][a-z0-9-]*(?:\|[a-z][a-z0-9-]*)*$")
OPTION = re.compile(r"(?<![\w-])--?[a-zA-Z][\w-]*")
PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_-]*$")
OUTPUT_PARAMS = {"outdir", "directory", "out"}


# --- parsing the README -----------------------------------------------------------------------------------


@dataclass
class Line:
    """One command line of a shell block: the command, its trailing comment and its README line number."""

    lineno: int
    text: str
    command: str
    comment: str = ""
    notes: list[str] = field(default_factory=list)  # comment-only continuation lines below it
    doc: str = "README.md"

    def where(self) -> str:
        return f"{self.doc}:{self.lineno}: {self.text.strip()}"


def split_comment(text: str) -> tuple[str, str]:
    """`cmd   # why` -> (`cmd`, `why`); a `#` inside a word (`#/`, `a#b`) is not a comment."""
    m = re.search(r"(?:^|\s)#(?:\s|$)", text)
    if not m:
        return text.strip(), ""
    return text[: m.start()].strip(), text[m.end():].strip()


def shell_lines(markdown: str, doc: str = "README.md") -> list[Line]:
    """Every command line of the shell-fenced blocks, with comment-only lines attached to the one above."""
    out: list[Line] = []
    lang: str | None = None
    for n, raw in enumerate(markdown.splitlines(), start=1):
        fence = re.match(r"^\s*```(\S*)\s*$", raw)
        if fence:
            lang = fence.group(1) if lang is None else None
            continue
        if lang not in SHELL_LANGS or not raw.strip():
            continue
        command, comment = split_comment(raw)
        if not command:
            if out:
                out[-1].notes.append(comment)
            continue
        out.append(Line(n, raw, command, comment, doc=doc))
    return out


def prose(markdown: str) -> list[tuple[int, str]]:
    """The lines outside fenced blocks, numbered (inline spans and links are checked there)."""
    out: list[tuple[int, str]] = []
    inside = False
    for n, raw in enumerate(markdown.splitlines(), start=1):
        if re.match(r"^\s*```", raw):
            inside = not inside
        elif not inside:
            out.append((n, raw))
    return out


def top_split(text: str) -> list[str]:
    """Split on ` | ` outside brackets: the documented alternatives of one line."""
    parts: list[str] = []
    depth, start = 0, 0
    for i, ch in enumerate(text):
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        elif ch == "|" and depth == 0 and text[i - 1:i] == " " and text[i + 1:i + 2] == " ":
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


def is_riskwatch(token: str) -> bool:
    return token == "riskwatch" or token.endswith("/riskwatch")


# --- checking commands against the Typer app ------------------------------------------------------------


ROOT_CMD: Any = typer.main.get_command(app)


def is_group(cmd: Any) -> bool:
    return hasattr(cmd, "commands")


def options_of(cmd: Any) -> set[str]:
    return {o for p in cmd.params for o in (*p.opts, *p.secondary_opts) if o.startswith("-")} | {"--help"}


ROOT_OPTIONS = options_of(ROOT_CMD)


class Problem(Exception):
    """A README line names something the CLI does not have."""


def clean(token: str) -> str:
    return token.strip("[](),;`'\"")


def expand(cur: Any, path: tuple[str, ...], tokens: list[str]) -> list[tuple[tuple[str, ...], Any, list[str]]]:
    """Resolve the leading command words (each may be `a|b`) to leaf commands; the rest are arguments."""
    if not is_group(cur):
        return [(path, cur, tokens)]
    if path == () and tokens and tokens[0].startswith("-"):  # root options before the command
        opt = clean(tokens[0])
        param = next((p for p in cur.params if opt in p.opts), None)
        skip = 1 if param is None or getattr(param, "is_flag", False) else 2
        return expand(cur, path, tokens[skip:]) if param else [(path, cur, tokens)]
    if tokens and tokens[0] == "…":
        return [(path, cur, tokens)]  # "any command", e.g. `riskwatch --log-format json …`
    word = clean(tokens[0]) if tokens else ""
    if not WORD.match(word):
        raise Problem(f"{' '.join(('riskwatch', *path))!r} is a group: the line names none of its commands")
    out: list[tuple[tuple[str, ...], Any, list[str]]] = []
    for alt in word.split("|"):
        sub = cur.commands.get(alt)
        if sub is None:
            raise Problem(f"no command {' '.join(('riskwatch', *path, alt))!r}")
        out += expand(sub, (*path, alt), tokens[1:])
    return out


@functools.cache
def own_parser_options(path: tuple[str, ...]) -> frozenset[str]:
    """The options a command with its own parser lists in its `-h` (the only reference there is)."""
    res = subprocess.run([str(Path(sys.executable).parent / "riskwatch"), *path, "-h"], capture_output=True,
                         text=True, timeout=60)
    return frozenset(OPTION.findall(res.stdout))


def check_args(path: tuple[str, ...], cmd: Any, args: list[str], outputs: set[str]) -> None:
    """Every option named is the command's (or the root's); positional outputs are remembered."""
    known = options_of(cmd) | ROOT_OPTIONS
    if cmd.context_settings.get("ignore_unknown_options"):
        known |= own_parser_options(path)  # parses its own arguments (`edge`: argparse)
    for opt in OPTION.findall(" ".join(args)):
        if opt not in known:
            raise Problem(f"{' '.join(('riskwatch', *path))!r} has no option {opt}")
    positionals = [p for p in cmd.params if not any(o.startswith("-") for o in p.opts)]
    i = 0
    it = iter(args)
    for tok in it:
        t = clean(tok)
        if t.startswith("-"):
            param = next((p for p in cmd.params if t in p.opts), None)
            if param is not None and not getattr(param, "is_flag", False):
                value = clean(next(it, ""))
                if param.name in OUTPUT_PARAMS:
                    outputs.add(value)
        elif t and t != "…" and i < len(positionals):
            if positionals[i].name in OUTPUT_PARAMS:
                outputs.add(t)
            i += 1


def check_invocation(text: str, outputs: set[str]) -> list[tuple[str, ...]]:
    """Check one `riskwatch …` text with its alternatives; return the command paths it names."""
    tokens = text.split()
    assert is_riskwatch(tokens[0]), text
    segments = top_split(" ".join(tokens[1:]))
    first = expand(ROOT_CMD, (), segments[0].split())
    paths = [p for p, _, _ in first]
    for p, cmd, rest in first:
        check_args(p, cmd, rest, outputs)
    parent_path = first[0][0][:-1]
    parent: Any = ROOT_CMD
    for w in parent_path:
        parent = parent.commands[w]
    for seg in segments[1:]:
        for p, cmd, rest in expand(parent, parent_path, seg.split()):
            check_args(p, cmd, rest, outputs)
            paths.append(p)
    return paths


def check_comment(comment: str, paths: list[tuple[str, ...]], outputs: set[str]) -> None:
    """Options a comment names belong to a command of its line; `riskwatch x y` it names exists."""
    for m in re.finditer(r"riskwatch(?: [a-z][a-z-]*)+", comment):
        check_invocation(m.group(0), outputs)
    commands = [c for c in (command_at(p) for p in paths) if c is not None]
    known = ROOT_OPTIONS.union(*(options_of(c) for c in commands)) if commands else ROOT_OPTIONS
    for opt in OPTION.findall(re.sub(r"riskwatch(?: [a-z][a-z-]*)+", "", comment)):
        if opt not in known:
            raise Problem(f"the comment names {opt}, an option of none of {[' '.join(p) for p in paths]}")


def command_at(path: tuple[str, ...]) -> Any:
    cur: Any = ROOT_CMD
    for w in path:
        cur = cur.commands.get(w) if is_group(cur) else None
        if cur is None:
            return None
    return cur


def make_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z][\w-]*):", (ROOT / "Makefile").read_text(), flags=re.M))


def check_paths(tokens: list[str], outputs: set[str], where: str, problems: list[str]) -> None:
    """Repository paths a command names exist (an output directory needs only its parent)."""
    for tok in tokens:
        t = clean(tok).rstrip(".:")
        if not REPO_PATH.match(t):
            continue
        p = ROOT / t
        if "*" in t or "{" in t:
            if not any(ROOT.glob(g) for g in braces(t)):
                problems.append(f"{where}: nothing matches {t}")
        elif not (p.exists() or (t in outputs and p.parent.is_dir())):
            problems.append(f"{where}: no such path {t}")


def braces(pattern: str) -> list[str]:
    """`a/{x,y}/b*` -> [`a/x/b*`, `a/y/b*`] (shell brace expansion, one level)."""
    m = re.search(r"\{([^{}]*)\}", pattern)
    return [pattern] if not m else [pattern[:m.start()] + alt + pattern[m.end():] for alt in m.group(1).split(",")]


def readme_problems(markdown: str, doc: str = "README.md") -> list[str]:
    """Everything a document names that does not exist, one message per problem with its line."""
    problems: list[str] = []
    targets = make_targets()
    lines = shell_lines(markdown, doc)
    for line in lines:
        tokens = line.command.split()
        outputs: set[str] = set()
        try:
            if is_riskwatch(tokens[0]):
                paths = check_invocation(line.command, outputs)
                for note in (line.comment, *line.notes):
                    check_comment(note, paths, outputs)
            elif tokens[0] == "make":
                for t in tokens[1:]:
                    if not t.startswith("-") and t not in targets:
                        raise Problem(f"no make target {t!r}")
        except Problem as exc:
            problems.append(f"{line.where()}: {exc}")
        check_paths(tokens, outputs, line.where(), problems)
    for n, text in prose(markdown):
        where = f"{doc}:{n}"
        for span in re.findall(r"`([^`]+)`", text):
            words = span.split()
            outputs = set()
            try:
                if words and is_riskwatch(words[0]) and len(words) > 1:
                    check_invocation(span, outputs)
                elif words and words[0] == "make" and len(words) == 2 and words[1] not in targets:
                    raise Problem(f"no make target {words[1]!r}")
                elif len(words) > 1 and words[0] in ROOT_CMD.commands and WORD.match(words[1]) and \
                        is_group(ROOT_CMD.commands[words[0]]):
                    check_invocation("riskwatch " + span, outputs)
            except Problem as exc:
                problems.append(f"{where}: `{span}`: {exc}")
            check_paths(words, outputs, f"{where}: `{span}`", problems)
        for link in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if not re.match(r"^[a-z]+:", link) and not (ROOT / doc).parent.joinpath(link).exists():
                problems.append(f"{where}: link to a missing file {link}")
    return problems


def test_every_readme_command_and_option_exists() -> None:
    problems = readme_problems(README.read_text())
    assert not problems, "README names what does not exist:\n" + "\n".join(problems)


@pytest.mark.parametrize("doc", ["docs/deploy.md", "docs/operations.md", "docs/edge.md", "docs/console.md"])
def test_every_command_of_the_operator_docs_exists(doc: str) -> None:
    """The docs the README links, with commands a user copies: the same check as the README's."""
    problems = readme_problems((ROOT / doc).read_text(), doc)
    assert not problems, f"{doc} names what does not exist:\n" + "\n".join(problems)


@pytest.mark.parametrize(("line", "expected"), [
    (".venv/bin/riskwatch alarms lst", "no command 'riskwatch alarms lst'"),
    (".venv/bin/riskwatch token create --rol bureau --name x", "has no option --rol"),
    (".venv/bin/riskwatch hazards start|sumbit ID", "no command 'riskwatch hazards sumbit'"),
    (".venv/bin/riskwatch token list | revok ID", "no command 'riskwatch token revok'"),
    (".venv/bin/riskwatch services status [--show-secrets|--envv]", "has no option --envv"),
    (".venv/bin/riskwatch alarms list   # or --jsn", "the comment names --jsn"),
    (".venv/bin/riskwatch services", "is a group"),
    (".venv/bin/riskwatch grafana render deploy/nowhere/dashboards", "no such path deploy/nowhere/dashboards"),
    (".venv/bin/riskwatch registry load simulators/sites/nowhere.yaml", "no such path"),
    (".venv/bin/riskwatch edge edge.yaml --chek", "'riskwatch edge' has no option --chek"),
    ("make dmeo", "no make target 'dmeo'"),
    ("cp deploy/alerting.exmaple.yaml .riskwatch/alerting.yaml", "no such path deploy/alerting.exmaple.yaml"),
])
def test_a_wrong_readme_line_fails_with_the_line(line: str, expected: str) -> None:
    """The checker itself: a wrong line is reported, with its line number and text."""
    problems = readme_problems(f"intro\n\n```sh\n{line}\n```\n")
    assert len(problems) == 1 and expected in problems[0] and "README.md:4:" in problems[0], problems
    assert line.split("#")[0].strip() in problems[0]


def test_wrong_prose_spans_and_links_fail() -> None:
    problems = readme_problems("See `riskwatch alarms akc` and `services upp`, [x](docs/nowhere.md), "
                               "`deploy/none.yaml`.\n")
    assert len(problems) == 4, problems


def test_the_readme_as_it_stands_documents_what_the_walk_runs() -> None:
    """Every literal form is walked or excused: a new README command must be tried (or excused) here."""
    walked = {key for step in FAST_WALK + SLOW_WALK for key in step.keys}
    forms = literal_forms(README.read_text(), dict.fromkeys(WALK_PLACEHOLDERS, "x"))
    untried = [f"{where}: {key}" for key, (_, where) in forms.items()
               if key not in walked and not any(key.startswith(p) for p in NOT_RUN)]
    assert not untried, "README lines neither walked nor in NOT_RUN:\n" + "\n".join(untried)
    missing = sorted(walked - set(forms))
    assert not missing, f"the walk runs lines the README no longer has: {missing}"


# --- the literal forms of each line -----------------------------------------------------------------------


def bracket_variants(text: str) -> list[str]:
    """`a [--x] [--y|--z]` -> `a`, `a --x`, `a --y`, `a --z` (and `a --x --y` when no bracket has a choice)."""
    groups = re.findall(r"\[([^\]]*)\]", text)
    bare = re.sub(r"\s*\[[^\]]*\]", "", text)
    out = [bare]
    for i, g in enumerate(groups):
        for alt in g.split("|"):
            n = -1

            def keep(m: re.Match[str], i: int = i, alt: str = alt) -> str:
                nonlocal n
                n += 1
                return f" {alt}" if n == i else ""

            out.append(re.sub(r"\s*\[[^\]]*\]", keep, text))
    if len(groups) > 1 and not any("|" in g for g in groups):
        out.append(re.sub(r"\s*\[([^\]]*)\]", r" \1", text))
    return [" ".join(v.split()) for v in out]


def forms_of(line: Line) -> list[str]:
    """The concrete commands one README line documents, each as it would be copied."""
    tokens = line.command.split()
    if not is_riskwatch(tokens[0]):
        return [line.command]
    prefix = tokens[0]
    segments = top_split(" ".join(tokens[1:]))
    first = expand(ROOT_CMD, (), segments[0].split())
    parent = " ".join(first[0][0][:-1])
    texts = [segments[0]] + [f"{parent} {s}".strip() for s in segments[1:]]
    out: list[str] = []
    for text in texts:
        words = text.split()
        # the command words `a|b` (not inside brackets) -> one text per alternative
        alts = [words]
        for i, w in enumerate(words):
            if "|" in w and WORD.match(w):
                alts = [[*words[:i], a, *words[i + 1:]] for a in w.split("|")]
                break
        for ws in alts:
            for v in bracket_variants(" ".join(ws)):
                form = f"{prefix} {v}"
                if form not in out:
                    out.append(form)
    return out


def placeholders(form: str) -> set[str]:
    """The words a user has to replace before running a form (ID, GW, DIR, $TOKEN, …, site.yaml)."""
    found: set[str] = set()
    for tok in form.split()[1:]:
        t = clean(tok)
        if t == "…" or "…" in t or "$" in t or PLACEHOLDER.match(t):
            found.add(t)
        elif re.search(r"\.(ya?ml|json|env|csv)$", t) and not t.startswith(".riskwatch/") \
                and not (ROOT / t).exists():
            found.add(t)
    return found


def key_of(form: str) -> str:
    """A form's name in the walk: `riskwatch …` whatever path the README writes before it."""
    tokens = form.split()
    return " ".join(["riskwatch", *tokens[1:]]) if is_riskwatch(tokens[0]) else form


def literal_forms(markdown: str, values: dict[str, str] | None = None) -> dict[str, tuple[str, str]]:
    """key -> (the form as printed, with `values` put in for its placeholders; where it is). Forms with a
    placeholder `values` does not fill are not literal and left out."""
    values = values or {}
    out: dict[str, tuple[str, str]] = {}
    for line in shell_lines(markdown):
        for form in forms_of(line):
            if placeholders(form) - set(values):
                continue
            text = form
            for name, value in values.items():
                text = re.sub(rf"(?<![\w$-]){re.escape(name)}(?![\w-])", value, text)
            out.setdefault(key_of(form), (text, line.where()))
    return out


# The placeholders the walks fill in (with their own directory, a new gateway, an alarm `alarms list` printed).
WALK_PLACEHOLDERS = ("DIR", "GW-ID", "PLANT-ID", "RULE", "TARGET", "NAME")


# --- the walk ---------------------------------------------------------------------------------------------


# Literal forms the walk does not run, by prefix, and why.
NOT_RUN = {
    "make demo": "bootstrap + the demo on the repository's own data dir; tests/e2e/test_demo.py plays the demo",
    "make test": "the whole suite",
    "riskwatch serve": "runs until SIGTERM; tests/e2e/test_serve*.py start it and call its API",
    "riskwatch bench": "minutes of measurements on its own services; tests/e2e/test_cli.py runs bench --quick",
    "riskwatch demo": "tests/e2e/test_demo.py",
    "riskwatch hazards tick --at": "needs an ISO time (a placeholder)",
}


@dataclass
class Step:
    """README forms run in one `bash -c` (in order), then a check of the result."""

    keys: list[str]
    check: Callable[[subprocess.CompletedProcess[str], Walk], None]
    code: int = 0


@dataclass
class Walk:
    clone: Path
    values: dict[str, str]
    env: dict[str, str]
    secrets: dict[str, str] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)

    def run(self, step: Step, forms: dict[str, tuple[str, str]]) -> subprocess.CompletedProcess[str]:
        for key in step.keys:
            assert key in forms, f"the README no longer documents {key!r}"
        script = "\n".join(forms[k][0] for k in step.keys)
        where = "; ".join(forms[k][1] for k in step.keys)
        res = subprocess.run(["bash", "-c", script], cwd=self.clone, env=self.env, capture_output=True,
                             text=True, timeout=300)
        out = res.stdout + res.stderr
        assert res.returncode == step.code, \
            f"{where}\n  ran: {script!r}\n  exit {res.returncode}, documented {step.code}\n{out}"
        try:
            step.check(res, self)
        except AssertionError as exc:
            raise AssertionError(f"{where}\n  ran: {script!r}\n  {exc}\n{out}") from exc
        return res

    @property
    def data(self) -> Path:
        return self.clone / ".riskwatch"


def make_clone(tmp: Path) -> Path:
    """A directory that looks like a clone: the repository's parts symlinked, `deploy/` copied (the
    walk renders dashboards into it), no `.riskwatch` (the walk's own services are created there)."""
    clone = tmp / "riskwatch"
    clone.mkdir()
    for entry in ROOT.iterdir():
        if entry.name in {".riskwatch", ".git", "deploy"} or entry.name.endswith("_cache"):
            continue
        (clone / entry.name).symlink_to(entry)
    shutil.copytree(ROOT / "deploy", clone / "deploy", symlinks=True,
                    ignore=shutil.ignore_patterns("dashboards"))
    return clone


@pytest.fixture
def walk(tmp_path: Path) -> Iterator[Walk]:
    clone = make_clone(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RISKWATCH_", "RW_", "GRAFANA_"))}
    values = {"DIR": str(tmp_path / "broker"), "GW-ID": "gw-readme-01", "PLANT-ID": "dy-p1"}
    w = Walk(clone, values, env)
    try:
        yield w
    finally:
        subprocess.run(["bash", "-c", ".venv/bin/riskwatch services down"], cwd=clone, env=env,
                       capture_output=True, timeout=120)
        LocalServices(clone / ".riskwatch").destroy()


def _ok(*needles: str) -> Callable[[subprocess.CompletedProcess[str], Walk], None]:
    def check(res: subprocess.CompletedProcess[str], w: Walk) -> None:
        for n in needles:
            assert n in res.stdout, f"expected {n!r} in its output"
    return check


def _no_secret(res: subprocess.CompletedProcess[str], w: Walk) -> None:
    assert w.secrets, "the walk has not seen the secrets yet"
    leaked = [name for name, s in w.secrets.items() if s in res.stdout + res.stderr]
    assert not leaked, "a password was printed without --show-secrets/--env"


def _up(res: subprocess.CompletedProcess[str], w: Walk) -> None:
    assert "postgresql://" in res.stdout and "mqtts://" in res.stdout, "prints URLs"
    assert w.data.is_dir() and any(w.data.iterdir()), "services live under the clone's ./.riskwatch"


def _env(res: subprocess.CompletedProcess[str], w: Walk) -> None:
    exports = dict(line.removeprefix("export ").split("=", 1) for line in res.stdout.strip().splitlines())
    assert set(exports) >= {"RISKWATCH_DB_URL", "RISKWATCH_MQTT_URL", "RISKWATCH_DATA_DIR"}, exports
    assert exports["RISKWATCH_DATA_DIR"].strip("'") == str(w.data), "the clone's own ./.riskwatch"
    for name in ("RISKWATCH_DB_URL", "RISKWATCH_MQTT_URL", "RISKWATCH_MQTT_HEALTH_URL"):
        m = re.match(r"'?\w+://[^:]+:([^@]+)@", exports.get(name, ""))
        assert m, f"{name} carries its password"
        w.secrets[name] = m.group(1)


def _status(res: subprocess.CompletedProcess[str], w: Walk) -> None:
    _no_secret(res, w)
    assert "running" in res.stdout, "both services running"


def _show_secrets(res: subprocess.CompletedProcess[str], w: Walk) -> None:
    for name in ("RISKWATCH_DB_URL", "RISKWATCH_MQTT_URL"):
        assert w.secrets[name] in res.stdout, f"--show-secrets prints the password of {name}"


def _migrate(res: subprocess.CompletedProcess[str], w: Walk) -> None:
    assert "0001_registry" in res.stdout


def _gateway(res: subprocess.CompletedProcess[str], w: Walk) -> None:
    assert "gw-readme-01" in res.stdout and "password" in res.stdout, "credentials shown once"


def _gateway_cert(res: subprocess.CompletedProcess[str], w: Walk) -> None:
    names = {p.name for p in Path(w.values["DIR"]).iterdir()}
    assert any(n.endswith((".crt", ".pem")) for n in names), f"a client certificate in DIR: {names}"


def _broker(res: subprocess.CompletedProcess[str], w: Walk) -> None:
    out = Path(w.values["DIR"])
    assert (out / "passwd").is_file() and (out / "acl").is_file() and (out / "ca.crt").is_file()
    assert "gw-readme-01:" in (out / "passwd").read_text(), "the password file holds the added gateway"
    assert "pattern write rw/v1/%u/#" in (out / "acl").read_text(), "gateways publish only below rw/v1/{id}/"


def _scenarios(res: subprocess.CompletedProcess[str], w: Walk) -> None:
    named = set(re.findall(r"--scenario (\w+)", README.read_text()))
    assert named, "the README names a scenario"
    for name in named:
        assert re.search(rf"^{name}\b", res.stdout, flags=re.M), f"scenario {name} is listed"
    assert "★ candidate" in res.stdout, "with the alarms each must raise"


def _token(res: subprocess.CompletedProcess[str], w: Walk) -> None:
    tokens = re.findall(r"\brwt_[\w-]{20,}", res.stdout)
    assert len(tokens) == 1, "the token is printed once"
    w.state.setdefault("tokens", []).append(tokens[0])


def _token_list(res: subprocess.CompletedProcess[str], w: Walk) -> None:
    assert "值班室" in res.stdout and "dy-foundry" in res.stdout
    assert not any(t in res.stdout for t in w.state["tokens"]), "stored as SHA-256: never shown again"


def _json_array(res: subprocess.CompletedProcess[str], w: Walk) -> None:
    assert isinstance(orjson.loads(res.stdout), list), "--json prints an array"


def _copied(res: subprocess.CompletedProcess[str], w: Walk) -> None:
    assert (w.data / "alerting.yaml").read_bytes() == (ROOT / "deploy" / "alerting.example.yaml").read_bytes()


def _env_file(res: subprocess.CompletedProcess[str], w: Walk) -> None:
    env_file = w.data / "riskwatch.env"
    assert env_file.read_bytes() == (ROOT / "deploy" / "example.env").read_bytes()
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600


def _unset_vars(res: subprocess.CompletedProcess[str], w: Walk) -> None:
    wanted = set(re.findall(r"^#(RW_[A-Z_]+)=", (ROOT / "deploy" / "example.env").read_text(), flags=re.M))
    assert wanted, "example.env names the RW_* secrets"
    for name in wanted:
        assert re.search(rf"alerting\.yaml:\d+: .*{name}", res.stderr), f"{name} unset, with file:line"
    assert f"{len(wanted)} environment variable" in res.stderr, "every unset ${VAR} at once"


def fill_in_secrets(w: Walk) -> None:
    """What the README's comment asks of the user: fill in the RW_* secrets of the copied file."""
    env_file = w.data / "riskwatch.env"
    text = re.sub(r"^#(RW_[A-Z_]+)=$", r"\1=readme-\1", env_file.read_text(), flags=re.M)
    text = text.replace("RW_DINGTALK_URL=readme-RW_DINGTALK_URL",
                        "RW_DINGTALK_URL=https://oapi.dingtalk.com/robot/send?access_token=readme")
    env_file.write_text(text)


def _alerting_ok(res: subprocess.CompletedProcess[str], w: Walk) -> None:
    assert res.stdout.startswith("ok .riskwatch/alerting.yaml"), "no problem left"
    assert "readme-RW_" not in res.stdout + res.stderr, "secrets are never printed"


def _dashboards(res: subprocess.CompletedProcess[str], w: Walk) -> None:
    out = w.clone / "deploy" / "grafana" / "dashboards"
    names = {p.name for p in out.glob("*.json")}
    assert {"rw-bureau.json", "rw-point.json", "rw-plant-dy-p1.json"} <= names, names
    for p in out.glob("*.json"):
        assert orjson.loads(p.read_bytes())["uid"] == p.stem, "one JSON file per dashboard"
    assert not (ROOT / "deploy" / "grafana" / "dashboards").is_symlink()


def _dry_run(res: subprocess.CompletedProcess[str], w: Walk) -> None:
    assert "would drop" in res.stdout


def _retention(res: subprocess.CompletedProcess[str], w: Walk) -> None:
    assert "drop" in res.stdout.lower() or res.stdout.strip(), "says what it dropped"


def _down(res: subprocess.CompletedProcess[str], w: Walk) -> None:
    gone = subprocess.run([".venv/bin/riskwatch", "services", "status"], cwd=w.clone, env=w.env,
                          capture_output=True, text=True, timeout=60)
    assert gone.returncode == 3, "status after down says stopped (exit 3)"
    assert LocalServices(w.data).status() == {"postgres": False, "mosquitto": False}


def _fill_then(check: Callable[[subprocess.CompletedProcess[str], Walk], None]) -> Callable[
        [subprocess.CompletedProcess[str], Walk], None]:
    def both(res: subprocess.CompletedProcess[str], w: Walk) -> None:
        check(res, w)
        fill_in_secrets(w)
    return both


def _anything(res: subprocess.CompletedProcess[str], w: Walk) -> None:
    assert res.stdout.strip(), "prints something"


ALERTING_CHECK = ["set -a; . .riskwatch/riskwatch.env; set +a",
                  "riskwatch alerting check .riskwatch/alerting.yaml"]

FAST_WALK: list[Step] = [
    Step(["riskwatch services up"], _up),
    Step(["riskwatch services up --env"], _env),
    Step(["riskwatch services status"], _status),
    Step(["riskwatch services status --show-secrets"], _show_secrets),
    Step(["riskwatch services status --env"], _env),
    Step(["riskwatch migrate"], _migrate),
    Step(["riskwatch registry load simulators/sites/county.yaml"], _ok("3 enterprises", "5 gateways")),
    Step(["riskwatch gateway add GW-ID --plant PLANT-ID"], _gateway),
    Step(["riskwatch gateway add GW-ID --plant PLANT-ID --cert --out DIR"], _gateway_cert),
    Step(["riskwatch broker export DIR"], _broker),
    Step(["riskwatch simulate --list-scenarios"], _scenarios),
    Step(["riskwatch rules check"], _ok("OK", "rules in")),
    Step(["riskwatch rules check --site simulators/sites/county.yaml"], _ok("OK", "alarm instances")),
    Step(["riskwatch token create --role bureau --name 值班室"], _token),
    Step(["riskwatch token create --role enterprise --enterprise dy-foundry --name 鼎业安全员"], _token),
    Step(["riskwatch token list"], _token_list),
    Step(["riskwatch alarms list"], _ok("alarms")),
    Step(["riskwatch alarms list --json"], _json_array),
    Step(["riskwatch alarms flood"], _anything),
    Step(["riskwatch hazards list"], _ok("hazard ledger")),
    Step(["riskwatch hazards list --json"], _json_array),
    Step(["riskwatch hazards tick"], _ok("listed for supervision")),
    Step(["riskwatch hazards intake"], _ok("candidates taken up")),
    Step(["cp deploy/alerting.example.yaml .riskwatch/alerting.yaml"], _copied),
    Step(["cp deploy/example.env .riskwatch/riskwatch.env && chmod 600 .riskwatch/riskwatch.env"], _env_file),
    # copied as written, the secrets are not filled in yet: every unset one is named at once (exit 2)
    Step(ALERTING_CHECK, _fill_then(_unset_vars), code=2),
    Step(ALERTING_CHECK, _alerting_ok),
    Step(["riskwatch alerting notifications"], _ok("notifications")),
    Step(["riskwatch alerting notifications --status dead"], _ok("notifications")),
    Step(["riskwatch grafana render deploy/grafana/dashboards"], _dashboards),
    Step(["riskwatch retention run --dry-run"], _dry_run),
    Step(["riskwatch retention run --raw-days 30"], _retention),
    Step(["riskwatch retention run --rollup-days 400"], _retention),
    Step(["riskwatch retention run --raw-days 30 --rollup-days 400 --dry-run"], _dry_run),
    Step(["riskwatch retention run"], _retention),
    Step(["riskwatch services down"], _down),
]


@pytest.mark.integration
def test_readme_commands_copied_as_written_work(walk: Walk) -> None:
    forms = literal_forms(README.read_text(), walk.values)
    for step in FAST_WALK:
        walk.run(step, forms)
    assert not (walk.clone / ".riskwatch").is_symlink()


# --- the slow walk: data flowing through the collector --------------------------------------------------


def _simulated(res: subprocess.CompletedProcess[str], w: Walk) -> None:
    assert "all acknowledged" in res.stdout, "every reading acknowledged by the broker"


def scenario_alarms(listing: str, name: str) -> set[str]:
    """The alarms `simulate --list-scenarios` says scenario `name` must raise (its `→ RULE on TAG` lines)."""
    block = re.search(rf"^{re.escape(name)}\b.*\n((?:[ \t]+.*\n?)*)", listing, flags=re.M)
    assert block, f"scenario {name} is listed"
    return set(re.findall(r"→ (\S+) on", block.group(1)))


def _alarms_raised(res: subprocess.CompletedProcess[str], w: Walk) -> None:
    alarms = orjson.loads(res.stdout)
    raised = {(a["rule_id"], a["target"]) for a in alarms}
    must = w.state["expected"]
    assert must and must <= {r for r, _ in raised}, f"the scenario's alarms {must} are not all in {raised}"
    w.state["alarms"] = alarms


def _acked(res: subprocess.CompletedProcess[str], w: Walk) -> None:
    assert "readme-walk" in res.stdout or "ack" in res.stdout.lower(), "says what it acknowledged"


SLOW_WALK: list[Step] = [
    Step(["riskwatch collect"], _anything),  # in the background, ended by SIGTERM
    Step(["riskwatch simulate --site simulators/sites/county.yaml --duration 60 --rate 1 --batch 20"], _simulated),
    Step(["riskwatch simulate --scenario gas_overpressure_esv_stuck --duration 90"], _simulated),
    Step(["riskwatch alarms ack RULE TARGET --by NAME"], _acked),
]


@pytest.mark.integration
@pytest.mark.slow
def test_readme_data_path_copied_as_written(walk: Walk) -> None:
    """`collect` in the background, the two simulate lines as written, then `alarms list --json` holds the
    scenario's alarms and `alarms ack` takes one as `alarms list` printed it."""
    forms = literal_forms(README.read_text(), walk.values)
    for key in ("riskwatch services up", "riskwatch migrate",
                "riskwatch registry load simulators/sites/county.yaml"):
        walk.run(next(s for s in FAST_WALK if s.keys == [key]), forms)
    listing = walk.run(next(s for s in FAST_WALK if s.keys == ["riskwatch simulate --list-scenarios"]), forms)
    walk.state["expected"] = scenario_alarms(listing.stdout, "gas_overpressure_esv_stuck")
    collector = subprocess.Popen(["bash", "-c", "exec " + forms["riskwatch collect"][0]], cwd=walk.clone,
                                 env=walk.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for step in SLOW_WALK[1:3]:
            walk.run(step, forms)
    finally:
        collector.send_signal(signal.SIGTERM)  # "SIGTERM flushes and exits"
        out, _ = collector.communicate(timeout=60)
    assert collector.returncode == 0, out
    assert re.search(r"[1-9]\d* readings stored", out), out
    walk.run(Step(["riskwatch alarms list --json"], _alarms_raised), forms)
    interlock = next(a for a in walk.state["alarms"] if a["rule_id"] == "bm.gas.esv_interlock")
    acked = literal_forms(README.read_text(), {**walk.values, "RULE": interlock["rule_id"],
                                               "TARGET": interlock["target"], "NAME": "readme-walk"})
    walk.run(SLOW_WALK[3], acked)
    after = walk.run(Step(["riskwatch alarms list --json"], _json_array), forms)
    state = next(a["state"] for a in orjson.loads(after.stdout) if a["rule_id"] == "bm.gas.esv_interlock")
    assert state == "ack", f"acknowledged as `alarms list` printed it: {state}"


def test_forms_of_a_line_are_its_documented_alternatives() -> None:
    """How a line is read: `a | b` siblings, `x|y` commands, each `[opt]` alone, placeholders left out."""
    md = ("```sh\n"
          ".venv/bin/riskwatch services status [--show-secrets|--env] | down   # no password\n"
          ".venv/bin/riskwatch hazards start|submit ID --role enterprise | verify ID\n"
          ".venv/bin/riskwatch retention run [--raw-days 30] [--dry-run]\n"
          "```\n")
    assert list(literal_forms(md)) == [
        "riskwatch services status", "riskwatch services status --show-secrets", "riskwatch services status --env",
        "riskwatch services down",
        "riskwatch retention run", "riskwatch retention run --raw-days 30", "riskwatch retention run --dry-run",
        "riskwatch retention run --raw-days 30 --dry-run"]
    filled = literal_forms(md, {"ID": "7"})
    assert filled["riskwatch hazards submit ID --role enterprise"][0] == \
        ".venv/bin/riskwatch hazards submit 7 --role enterprise"
    assert filled["riskwatch hazards verify ID"][0] == ".venv/bin/riskwatch hazards verify 7"
