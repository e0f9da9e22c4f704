"""Smoke test of the benchmark harness on a tiny size: every step runs, the results hold the
figures the README table is made of, and the engine saw exactly the records the anchors saw;
and the 11M projection, computed from stored results of real runs."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from benchmarks import batch_profile, follow_master, projection
from benchmarks.__main__ import main
from benchmarks.engine_bench import TIMED_STAGES, bulk_load
from benchmarks.feeds import HeldBackLine, cached_feeds, hold_back_newest
from benchmarks.plan import RESULTS_DIR
from benchmarks.web_search import AppendClock, as_other_child, first_decision_latencies_ms
from linkage_models.scoring import CompiledModel
from tests.feeds import synthetic_feeds
from tests.test_governance_helpers import AMELIA, OLIVER, governed_master, ingest, update

# a real run of 10,000 and 100,000 children, before batches had stage times or the follow phase
# quiet single updates (a projection must still be computable from such files)
STORED_RESULT = RESULTS_DIR / "bench-20261201T100903Z.json"


def test_benchmark_of_300_children_writes_every_figure(tmp_path: Path):
    out = tmp_path / "results"
    status = main(["--sizes", "300", "--cache", str(tmp_path / "cache"), "--out", str(out),
                   "--rate", "200", "--follow-seconds", "1", "--quiet-updates", "3"])

    assert status == 0
    document = json.loads((out / "latest.json").read_text())
    assert {"started_at", "seconds", "machine", "model_version", "link_threshold", "plan",
            "sizes"} <= document.keys()
    probe = document["machine"]["speed_probe"]
    assert probe["python_s"] > 0 and probe["duckdb_s"] > 0
    assert "Speed probe: Python" in (out / "latest.md").read_text()
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
    assert engine["bulk"]["master_bytes"] > 0
    quiet = follow["quiet_single_update_ms"]
    assert quiet["appended"] == 3
    assert 0 < quiet["committed"] <= 3  # a line the engine dead-letters never reaches links
    assert 0 < quiet["p50"] <= quiet["max"]
    assert follow["batch_cost"]["small_batches"] >= quiet["committed"]  # one batch each
    assert follow["batch_cost"]["small_batch_median_ms"] > 0
    stages = engine["cost_curve"]["points"][-1]["stages"]
    assert set(stages) == {*TIMED_STAGES, "other"}
    assert all(stage["ms_per_batch"] >= 0 for stage in stages.values())
    assert set(engine["cost_curve"]["stage_growth"]) == set(TIMED_STAGES)
    assert {"seconds", "peak_rss_mib", "f1"} <= size["anchor_batch"].keys()
    assert size["anchor_incremental"]["records_per_second"] > 0
    assert set(size["ratios"]) == {"bulk_throughput_vs_batch", "bulk_throughput_vs_incremental",
                                   "peak_rss_vs_batch", "f1_vs_batch"}
    assert "| 300 |" in (out / "latest.md").read_text()
    assert len(list(out.glob("bench-*.json"))) == 1
    assert "| 300 | growth, last ÷ first quarter |" in (out / "latest.md").read_text()
    if importlib.util.find_spec("matplotlib"):  # plots need requirements-bench.lock
        assert (out / "stages.png").stat().st_size > 0



def test_the_follow_phase_alone_runs_on_a_copy_of_a_master_loaded_before(tmp_path: Path):
    cache = tmp_path / "cache"
    feeds = cached_feeds(cache / "300", 300, seed=1)
    held = 200 * 1 + 3  # --rate 200 for 1 s, then 3 quiet updates, as below
    split = hold_back_newest(feeds.feeds, held, tmp_path / "bulk")
    master = tmp_path / "loaded.duckdb"
    bulk_load(sys.executable, split.bulk_feeds, master, tmp_path / "bulk.log", 300)
    before = master.read_bytes()

    status = follow_master.main([
        "--master", str(master), "--children", "300", "--cache", str(cache), "--rate", "200",
        "--follow-seconds", "1", "--quiet-updates", "3", "--out", str(tmp_path / "results")])

    assert status == 0
    assert master.read_bytes() == before  # only a copy was followed
    result = json.loads((tmp_path / "results" / "follow-latest.json").read_text())
    follow = result["follow"]
    assert follow["appended"] == 200
    assert 0 < follow["committed"] <= 200
    assert follow["quiet_single_update_ms"]["appended"] == 3
    assert follow["batch_cost"]["small_batch_median_ms"] > 0

    # the engine runs with the config given: one it refuses fails the phase with its reason
    retired = tmp_path / "retired.toml"
    retired.write_text("[batch]\nmax_latency_ms = 50\n")
    follow_master.main([
        "--master", str(master), "--children", "300", "--cache", str(cache), "--rate", "200",
        "--follow-seconds", "1", "--quiet-updates", "0", "--engine-config", str(retired),
        "--out", str(tmp_path / "results")])
    refused = json.loads((tmp_path / "results" / "follow-latest.json").read_text())
    assert refused["plan"]["engine_config"] == retired.read_text()
    assert "batch.max_latency_ms is no longer a setting" in refused["follow"]["failed"]


def test_projection_of_two_sizes_passes_through_both_and_is_labelled(tmp_path: Path):
    status = projection.main([str(STORED_RESULT), "--out", str(tmp_path)])

    assert status == 0
    projected = json.loads((tmp_path / "projection-latest.json").read_text())
    assert projected["children"] == 11_000_000
    assert projected["from_sizes"] == [10_000, 100_000]
    assert projected["kind"].startswith("projection")
    assert projected["bulk_seconds"]["value"] > 0
    assert projected["peak_rss_mib"]["value"] > 1072.4  # above the 100k size's measured peak
    assert projected["master_bytes"]["value"] is None  # not measured by that run
    assert "extrapolated, not measured" in (tmp_path / "projection-latest.md").read_text()
    sizes = projection.measured_sizes([json.loads(STORED_RESULT.read_text())])
    at_100k = projection.project(sizes, children=100_000)
    assert at_100k["peak_rss_mib"]["value"] == pytest.approx(1072.4, abs=0.1)
    assert at_100k["follow_p99_ms"]["value"] == pytest.approx(
        sizes[1]["engine"]["follow"]["p99_ms"], abs=0.1)


def test_projection_of_one_size_is_refused(tmp_path: Path, capsys):
    one_size = tmp_path / "one.json"
    document = json.loads(STORED_RESULT.read_text())
    one_size.write_text(json.dumps({**document, "sizes": document["sizes"][:1]}))

    assert projection.main([str(one_size), "--out", str(tmp_path)]) == 2
    assert "at least two measured sizes" in capsys.readouterr().err


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


def test_web_search_times_each_record_to_the_batch_that_first_placed_it(
    tmp_path: Path, model: CompiledModel
):
    clock = AppendClock()
    told = []
    progress = clock.also(lambda appended, total: told.append((appended, total)))
    db = tmp_path / "m.duckdb"
    con = governed_master(db)
    lines = [HeldBackLine("gro", "oliver", "{}\n"), HeldBackLine("gro", None, "bad\n"),
             HeldBackLine("gro", "amelia", "{}\n")]
    progress(2, 3)
    ingest(con, model, [update("gro", "oliver", source_key="R1", **OLIVER)])
    progress(3, 3)
    ingest(con, model, [update("gro", "amelia", source_key="R3", **AMELIA)])
    # a later decision on Oliver's record (a redo, or here a person's) is not its latency
    con.execute("INSERT INTO decision_history (feed, record_id, child_id, decision, decided_by, "
                "batch_id, decided_at) VALUES ('gro', 'oliver', 'C', 'link', 'redo', 2, now())")
    committed = dict(con.execute("SELECT batch_id, epoch(committed_at) FROM batches").fetchall())
    con.close()

    latencies = sorted(first_decision_latencies_ms(db, lines, clock))
    assert told == [(2, 3), (3, 3)]
    assert clock.appended_at(0) == clock.appended_at(1) <= clock.appended_at(2)
    expected = sorted([(committed[1] - clock.appended_at(0)) * 1000,
                       (committed[2] - clock.appended_at(2)) * 1000])
    assert latencies == pytest.approx(expected)
def test_the_batch_profile_times_each_statement_of_real_batches_on_a_copy(tmp_path: Path):
    feeds = synthetic_feeds(tmp_path / "g", 200, seed=3)
    master = tmp_path / "m.duckdb"
    bulk_load(sys.executable, feeds, master, tmp_path / "bulk.log", 300)
    before = master.read_bytes()
    updates = batch_profile.sample_updates(feeds, 6, new_key_share=0.5, seed=1)

    result = batch_profile.profile(master, updates, batch_size=2, explain=True,
                                   checkpoint_every=2)

    assert master.read_bytes() == before  # a copy was written
    assert len(updates) == 6 and result["batches"] == 3
    assert len(result["checkpoint_seconds"]) == 1  # after the second batch
    assert result["median_ms_after_first_checkpoint"] > 0
    assert result["median_ms"] > 0 and result["stages_median_ms"]["write"] > 0
    assert result["statements_per_batch"] > 10
    commit = [s for s in result["statements"] if s["sql"] == "COMMIT"]
    assert commit and commit[0]["runs_per_batch"] == 1
    assert any(s["planning_ms_per_batch"] for s in result["statements"])


def test_the_load_profile_times_the_statements_of_a_bulk_loads_second_half(tmp_path: Path):
    feeds = synthetic_feeds(tmp_path / "g", 200, seed=3)
    updates = batch_profile.feed_updates_in_order(feeds)

    result = batch_profile.profile_load(updates, batch_size=400, explain=False)

    assert result["updates"] == len(updates) > 800
    batches = -(-len(updates) // 400)
    assert result["timed_batches"] == batches - -(-(len(updates) // 2) // 400)
    commit = [s for s in result["statements"] if s["sql"] == "COMMIT"]
    assert commit and commit[0]["runs_per_batch"] == 1
    assert any(s["sql"].startswith("CREATE OR REPLACE TEMP TABLE previous_children")
               for s in result["statements"])
