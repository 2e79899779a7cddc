"""Constructors take what they need and find nothing: no default clock, no catalog read from disk."""

from __future__ import annotations

import inspect

import pytest

from alerting.config import load_alerting
from alerting.dispatcher import Dispatcher
from core.clock import FakeClock
from ingest.collector import Collector
from rules.engine import RuleEngine


@pytest.mark.parametrize(("cls", "names"), [
    (RuleEngine, ("catalog", "clock")),
    (Dispatcher, ("clock", "titles")),
    (Collector, ("clock",)),
])
def test_clock_and_catalog_are_required_keywords(cls: type, names: tuple[str, ...]) -> None:
    params = inspect.signature(cls.__init__).parameters
    for name in names:
        p = params[name]
        assert p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is inspect.Parameter.empty, (cls, name)


def test_dispatcher_reads_no_catalog_and_opens_nothing() -> None:
    titles = {"x.rule": ("测试规则", None)}
    d = Dispatcher("postgresql://nobody@127.0.0.1:1/none", load_alerting(None), public_url="http://t",
                   link_secret=b"k", clock=FakeClock(), titles=titles)
    assert d.titles is titles and d.channels == {}


def test_engine_takes_the_catalog_it_is_given() -> None:
    from rules.model import Catalog

    empty = Catalog([])
    e = RuleEngine(catalog=empty, clock=FakeClock())
    assert e.catalog is empty and e.compiled is None
