"""The collector's `seqs` ranges: per gateway, sorted, merged, duplicates once."""

from __future__ import annotations

from ingest.collector import seq_ranges


def test_seq_ranges_are_sorted_merged_per_gateway() -> None:
    log = [("gw-a", 5), ("gw-a", 1), ("gw-b", 9), ("gw-a", 2), ("gw-a", 3), ("gw-a", 2), ("gw-a", 7), ("gw-a", 6)]
    assert seq_ranges(log) == {"gw-a": [[1, 3], [5, 7]], "gw-b": [[9, 9]]}
    assert seq_ranges([]) == {}
