"""The pure core of per-gateway leases (ingest.leases.plan): fair shares, expiry, rebalancing, on a fake clock."""

from __future__ import annotations

import pytest

from ingest.leases import LeaseRow, LeaseSettings, Plan, fair_share, plan

GWS = [f"gw-{i:02d}" for i in range(10)]
NOW = 1_764_460_800.0


def lease(g: str, who: str | None, expires: float, epoch: int = 1) -> LeaseRow:
    return LeaseRow(g, who, expires, epoch)


def test_fair_share_fits_every_gateway() -> None:
    assert fair_share(10, 3) == 4 and fair_share(9, 3) == 3 and fair_share(0, 3) == 0
    assert fair_share(5, 0) == 5  # nobody counted live yet: the caller is


def test_first_collector_claims_all_then_gives_back_its_share_when_others_join() -> None:
    p = plan("a", GWS, {}, live=1, now=NOW)
    assert p == Plan(claim=tuple(GWS))
    leases = {g: lease(g, "a", NOW + 8) for g in GWS}
    p2 = plan("a", GWS, leases, live=3, now=NOW + 2)
    assert len(p2.renew) == 4 and len(p2.release) == 6 and not p2.claim
    assert set(p2.renew) | set(p2.release) == set(GWS)
    # The newcomer finds nothing free until a release: it claims nothing and takes nobody's live lease.
    assert plan("b", GWS, leases, live=3, now=NOW + 2) == Plan()


def test_expired_and_released_leases_are_claimed_up_to_the_share_only() -> None:
    leases = {g: lease(g, "dead", NOW - 0.001) for g in GWS[:5]}  # a collector that stopped renewing
    leases |= {g: lease(g, None, NOW - 30) for g in GWS[5:8]}      # released at a clean stop
    leases |= {g: lease(g, "b", NOW + 5) for g in GWS[8:]}         # b's, alive
    p = plan("a", GWS, leases, live=2, now=NOW)
    assert len(p.claim) == 5 and not set(p.claim) & set(GWS[8:])
    # Exactly at the expiry instant a lease is over (expires_at <= now), a moment before it is not.
    assert plan("a", GWS[:1], {GWS[0]: lease(GWS[0], "b", NOW)}, live=2, now=NOW).claim == (GWS[0],)
    assert plan("a", GWS[:1], {GWS[0]: lease(GWS[0], "b", NOW + 1e-3)}, live=2, now=NOW) == Plan()


def test_own_expired_lease_is_claimed_again_not_renewed() -> None:
    """Another collector may have written its state meanwhile: a new claim (new epoch, reload), not a renewal."""
    p = plan("a", GWS[:1], {GWS[0]: lease(GWS[0], "a", NOW - 1)}, live=1, now=NOW)
    assert p == Plan(claim=(GWS[0],))


def test_shares_of_live_collectors_partition_the_gateways() -> None:
    """Three collectors claiming in turn from an empty table end with every gateway on exactly one."""
    leases: dict[str, LeaseRow] = {}
    for who in ("a", "b", "c"):
        for g in plan(who, GWS, leases, live=3, now=NOW).claim:
            leases[g] = lease(g, who, NOW + 8)
    owners = [leases[g].collector_id for g in GWS]
    assert sorted(owners.count(w) for w in "abc") == [2, 4, 4]
    # rendezvous ranks: different collectors prefer different gateways
    assert plan("a", GWS, {}, live=3, now=NOW).claim != plan("b", GWS, {}, live=3, now=NOW).claim


def test_lease_settings_refuse_a_ttl_that_one_late_renewal_would_break() -> None:
    assert LeaseSettings(ttl_s=6, renew_s=2).takeover_s == 8
    with pytest.raises(ValueError, match="twice the renew"):
        LeaseSettings(ttl_s=3, renew_s=2)


def test_lease_settings_refuse_a_stall_limit_below_the_ttl() -> None:
    with pytest.raises(ValueError, match="stall"):
        LeaseSettings(ttl_s=8, renew_s=2, stall_s=5)
