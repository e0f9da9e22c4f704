"""Smoke test of the benchmark harness on a tiny size: every step runs, the results hold the
figures the README table is made of, and the engine saw exactly the records the anchors saw."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.__main__ import main
from benchmarks.feeds import HeldBackLine
from benchmarks.web_search import as_other_child


def test_benchmark_of_300_children_writes_every_figure(tmp_path: Path):
    out = tmp_path / "results"
    status = main(["--sizes", "300", "--cache", str(tmp_path / "cache"), "--out", str(out),
                   "--rate", "200", "--follow-seconds", "1"])

    assert status == 0
    document = json.loads((out / "latest.json").read_text())
    assert {"started_at", "seconds", "machine", "model_version", "link_threshold", "plan",
            "sizes"} <= document.keys()
    (size,) = document["sizes"]
    assert size["children"] == 300
    engine = size["engine"]
    assert engine["bulk"]["updates_per_second"] > 0
    assert engine["bulk"]["peak_rss_mib"] > 0
    follow = engine["follow"]
    assert follow["appended"] == 200
    assert 0 < follow["committed"] <= follow["appended"]
    assert 0 <= follow["p50_ms"] <= follow["p95_ms"] <= follow["p99_ms"] <= follow["max_ms"]
    assert engine["accuracy"]["unlinked_records"] == 0
    assert engine["accuracy"]["records"] == size["anchor_batch"]["records"]
    assert engine["cost_curve"]["points"][0]["master_records"] == 0
    assert {"seconds", "peak_rss_mib", "f1"} <= size["anchor_batch"].keys()
    assert size["anchor_incremental"]["records_per_second"] > 0
    assert set(size["ratios"]) == {"bulk_throughput_vs_batch", "bulk_throughput_vs_incremental",
                                   "peak_rss_vs_batch", "f1_vs_batch"}
    assert "| 300 |" in (out / "latest.md").read_text()
    assert len(list(out.glob("bench-*.json"))) == 1


def test_follow_lines_for_an_existing_master_are_other_childrens():
    line = HeldBackLine("gro", "G000000007", json.dumps({
        "record_id": "G000000007", "event": "birth", "registration_id": "R12",
        "nhs_number": "9434765919", "forenames": "OLIVER"}) + "\n")
    other = as_other_child(line)
    record = json.loads(other.text)
    assert (other.feed, other.record_id) == ("gro", "WSG000000007")
    assert record == {"record_id": "WSG000000007", "event": "birth", "registration_id": "WSR12",
                      "nhs_number": "4434765919", "forenames": "OLIVER"}
    bad = HeldBackLine("gro", None, "not json\n")
    assert as_other_child(bad) == bad
