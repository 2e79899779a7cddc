"""Pure parts of the southbound side and the link: OPC UA DataValue -> reading, backoff, JSON v1 encoding."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest
from asyncua import ua

from ingest.decode import decode_json_v1
from ingest.edge.formats import JsonV1, Reading
from ingest.edge.publisher import next_backoff
from ingest.edge.sources import opcua_reading

T = dt.datetime(2026, 12, 1, 8, 0, 0, 250000, tzinfo=dt.UTC)
T_MS = int(T.timestamp() * 1000)


def dv(value: object, vt: ua.VariantType | None = None, status: int | None = None, src: dt.datetime | None = T,
       srv: dt.datetime | None = None) -> ua.DataValue:
    kw: dict[str, object] = {"SourceTimestamp": src, "ServerTimestamp": srv}
    if status is not None:
        kw["StatusCode"] = ua.StatusCode(status)
    return ua.DataValue(ua.Variant(value, vt) if vt else ua.Variant(value), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("value", "want"), [
    (dv(71.25, ua.VariantType.Double), Reading("T", T_MS, 71.25, 0)),
    (dv(True, ua.VariantType.Boolean), Reading("T", T_MS, 1.0, 0)),
    (dv(-7, ua.VariantType.Int16), Reading("T", T_MS, -7.0, 0)),
    (dv(3.5, ua.VariantType.Float, status=ua.StatusCodes.BadSensorFailure), Reading("T", T_MS, 3.5, 2)),
    (dv(3.5, ua.VariantType.Double, status=ua.StatusCodes.UncertainLastUsableValue), Reading("T", T_MS, 3.5, 1)),
    # no SourceTimestamp: the server's; neither: now
    (dv(1.0, ua.VariantType.Double, src=None, srv=T), Reading("T", T_MS, 1.0, 0)),
    (dv(1.0, ua.VariantType.Double, src=None), Reading("T", 42, 1.0, 0)),
    # a naive timestamp is UTC (asyncua's convention)
    (dv(1.0, ua.VariantType.Double, src=T.replace(tzinfo=None)), Reading("T", T_MS, 1.0, 0)),
])
def test_opcua_values_become_readings_with_the_plc_timestamp_and_quality(value: ua.DataValue, want: Reading) -> None:
    assert opcua_reading("T", value, 42) == (want, None)


@pytest.mark.parametrize(("value", "why"), [
    (dv("##ERR", ua.VariantType.String), "is not a number"),
    (dv([1.0, 2.0], ua.VariantType.Double), "is not a number"),
    (dv(None, status=ua.StatusCodes.BadNotConnected), "without a value (and no earlier value"),
    (dv(float("nan"), ua.VariantType.Double), "not finite"),
    (dv(float("inf"), ua.VariantType.Double), "not finite"),
])
def test_unusable_opcua_values_are_reported_not_invented(value: ua.DataValue, why: str) -> None:
    r, msg = opcua_reading("T", value, 42)
    assert r is None and msg is not None and why in msg


def test_bad_status_without_value_flags_the_last_value_at_its_own_time() -> None:
    r, why = opcua_reading("T", dv(None, status=ua.StatusCodes.BadSensorFailure), 42, last=17.5)
    assert why is None and r == Reading("T", T_MS, 17.5, 2)


def test_backoff_grows_is_capped_and_jittered() -> None:
    assert [next_backoff(a, 0.5, 30, rnd=lambda: 1.0) for a in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert next_backoff(5, 0.5, 30, rnd=lambda: 0.0) == 0.25  # never a busy loop
    assert next_backoff(10_000, 0.5, 30, rnd=lambda: 0.5) == 15


def test_json_v1_messages_are_what_the_collector_decodes() -> None:
    now_s = T.timestamp()
    readings = [Reading("TT-101", T_MS, 71.2), Reading("PDT-101", T_MS + 1, 1180.0, 1), Reading("X", T_MS + 2, 0.0, 2)]
    payload = JsonV1().encode(7, T_MS + 10, readings)
    assert orjson.loads(payload)["seq"] == 7
    from core.settings import IngestLimits

    d = decode_json_v1(payload, now_s, IngestLimits())
    assert d.seq == 7 and d.tags == ["TT-101", "PDT-101", "X"] and d.qualities == [0, 1, 2] and not d.rejected
    assert d.times_us == [T_MS * 1000, (T_MS + 1) * 1000, (T_MS + 2) * 1000]
