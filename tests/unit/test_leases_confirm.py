"""A group member's `stored` confirmations across a handover (Collector._handover_confirmed), without I/O.

After a claim, messages published before our subscription sit in the previous owner's session, so our highest
stored seq must not be confirmed until the gateway has re-sent its unconfirmed backlog to us.
"""

from __future__ import annotations

from core.clock import FakeClock
from core.settings import MqttUrl
from ingest.collector import Collector, _Resync
from ingest.leases import Leases


def member() -> Collector:
    url = MqttUrl(host="127.0.0.1", port=1, username="riskwatch-collector-2", password="x")
    return Collector("postgresql://unused/none", url, clock=FakeClock(), leases=Leases("riskwatch-collector-2"))


def test_no_confirmation_after_a_claim_until_the_backlog_is_re_sent() -> None:
    c = member()
    c._resyncing["gw"] = _Resync()
    owned = frozenset({"gw"})
    # live messages 111..120 arrive first (101..110 are in the dead owner's session): nothing confirmed
    assert c._handover_confirmed({"gw": 120}, owned, [("gw", s) for s in range(111, 121)]) == {}
    # the gateway re-sends from its lowest unconfirmed seq: confirmed as far as the re-send has been committed
    assert c._handover_confirmed({"gw": 120}, owned, [("gw", s) for s in range(101, 106)]) == {"gw": 105}
    assert "gw" in c._resyncing
    # the re-send reaches the stored maximum: normal confirmations (the stored maximum) from here on
    assert c._handover_confirmed({"gw": 121}, owned, [("gw", s) for s in range(106, 122)]) == {"gw": 121}
    assert "gw" not in c._resyncing
    assert c._handover_confirmed({"gw": 122}, owned, [("gw", 122)]) == {"gw": 122}


def test_a_gateway_not_held_is_never_confirmed_by_us() -> None:
    """Its owner confirms it; ours would be the stored maximum, which may cover what the owner has not stored."""
    c = member()
    assert c._handover_confirmed({"gw": 50, "mine": 7}, frozenset({"mine"}), [("gw", 50), ("mine", 7)]) == {"mine": 7}
    c._resyncing["gw"] = _Resync()
    assert c._handover_confirmed({"gw": 50}, frozenset(), [("gw", 49), ("gw", 40), ("gw", 50)]) == {}
