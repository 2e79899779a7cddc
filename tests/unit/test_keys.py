"""Identity strings: one parse and one format each, the database's strings unchanged, forgeries refused."""

from __future__ import annotations

import pytest

from core.keys import AlarmItem, AlarmKey, HazardItem, KeyFormatError, Subject, parse_item
from core.readings import Readings
from core.vocab import HAZARD_SOURCES, INDUSTRIES, SEVERITIES, Industry, Severity, Source


@pytest.mark.parametrize(("text", "subject"), [
    ("p:42", Subject.point(42)),
    ("p:0", Subject.point(0)),
    ("g:gw-a1", Subject.gateway("gw-a1")),
    ("g:乙厂-网关", Subject.gateway("乙厂-网关")),
    ("d:gw-sp1/bf1", Subject.device("gw-sp1", "bf1")),
    ("d:gw-sp1/袋收尘 1:a", Subject.device("gw-sp1", "袋收尘 1:a")),
])
def test_subject_round_trip(text: str, subject: Subject) -> None:
    assert Subject.parse(text) == subject
    assert subject.format() == text == str(subject)


@pytest.mark.parametrize("forged", [
    "", "p:", "g:", "p:-1", "p:4x", "p: 4", "p:٣",  # an Arabic-Indic digit is a digit to str.isdigit
    "P:4", "d:7", "d:gw/", "d:/bf1", "d:", "x", "gw-a1", "p:" + "9" * 10_000 + "x",
])
def test_subject_refuses_what_the_database_never_holds(forged: str) -> None:
    with pytest.raises(KeyFormatError):
        Subject.parse(forged)
    assert not Subject.is_subject(forged)


def test_alarm_key_is_the_tuple_the_stores_use() -> None:
    k = AlarmKey("bm.coal.co:hi", "p:7")
    assert k == ("bm.coal.co:hi", "p:7") and hash(k) == hash(("bm.coal.co:hi", "p:7"))
    assert {("bm.coal.co:hi", "p:7"): 1}[k] == 1
    assert k.subject_key == Subject.point(7)


@pytest.mark.parametrize(("text", "item"), [
    ("alarm:bm.coal.co:hi|p:1", AlarmItem(AlarmKey("bm.coal.co:hi", "p:1"))),
    ("alarm:rt.gateway.offline|g:gw-b1", AlarmItem(AlarmKey("rt.gateway.offline", "g:gw-b1"))),
    ("hazard:7:confirmed", HazardItem(7, "confirmed")),
    ("hazard:12:sent_back", HazardItem(12, "sent_back")),
])
def test_item_round_trip(text: str, item: AlarmItem | HazardItem) -> None:
    assert parse_item(text) == item
    assert item.format() == text == str(item)


@pytest.mark.parametrize("forged", [
    "", "alarm:", "alarm:rule", "alarm:|p:1", "alarm:rule|", "hazard:", "hazard:7", "hazard:7:",
    "hazard:x:opened", "hazard:-1:opened", "hazard:٣:opened", "ALARM:r|p:1", "notification:1",
    "hazard:" + "1" * 5000,
])
def test_item_refuses_forgeries(forged: str) -> None:
    with pytest.raises(KeyFormatError):
        parse_item(forged)


def test_key_errors_are_the_projects_and_value_errors() -> None:
    from core.errors import RiskwatchError

    with pytest.raises(RiskwatchError):
        parse_item("nonsense")
    with pytest.raises(ValueError):
        Subject.parse("nonsense")


def test_vocabulary_values_are_the_stored_strings() -> None:
    assert SEVERITIES == ("low", "medium", "high", "urgent")  # ranking order, lowest first
    assert INDUSTRIES == ("cement", "lime", "refractory", "foundry", "machinery")
    assert HAZARD_SOURCES == ("sensor", "self_report", "inspection", "public_tip")
    assert f"{Severity.URGENT}" == "urgent" and Industry("lime") is Industry.LIME and Source.SENSOR == "sensor"


def test_one_readings_type_from_ingest_to_rules() -> None:
    from ingest.batch import Batch
    from ingest.batch import Readings as IngestReadings
    from rules.evaluate import BatchArrays

    assert IngestReadings is Readings and BatchArrays is Readings
    b = Batch(point_ids=[1, 1, 2], times_us=[5, 5, 5], values=[1.0, 2.0, 3.0], qualities=[0, 0, 0])
    r = b.readings()
    assert isinstance(r, Readings) and r.point_id.tolist() == [1, 2] and r.value.tolist() == [1.0, 3.0]


def test_alarm_key_of_skips_what_is_not_an_alarm_item() -> None:
    from core.keys import alarm_key_of

    assert alarm_key_of("alarm:r:hi|p:3") == ("r:hi", "p:3")
    assert alarm_key_of("hazard:3:opened") is None
    assert alarm_key_of("alarm:no-bar") is None and alarm_key_of("") is None
