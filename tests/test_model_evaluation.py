"""evaluate_links and threshold_sweep against small hand-made truth."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from linkage_models.evaluation import PairwiseScore, evaluate_links, threshold_sweep
from linkage_models.scoring import DEFAULT_MODEL_PATH
from streams.canonical import Update, updates_to_arrow

T = "2009-01-01T00:00:00Z"

TRUTH = """feed,record_id,person_id,bad_kind
gro,1,P1,
dwp,1,P1,
nhs,1,P1,
census,1,P1,
gro,2,P2,
dwp,2,P3,
nhs,3,P3,
census,5,P5,
gro,9,,invalid_json
dwp,9,P9,wrong_type
"""

# child C1 holds three of P1's records, C2 the fourth (a missed link); C3 holds P2 and P3
# (a false merge); C4 the rest of P3; census:5 never reached the master
LINKS = [
    ("gro", "1", "C1"), ("dwp", "1", "C1"), ("nhs", "1", "C1"), ("census", "1", "C2"),
    ("gro", "2", "C3"), ("dwp", "2", "C3"), ("nhs", "3", "C4"),
]


@pytest.fixture
def master(tmp_path: Path) -> tuple[duckdb.DuckDBPyConnection, Path]:
    truth = tmp_path / "truth.csv"
    truth.write_text(TRUTH)
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE links(feed TEXT, record_id TEXT, child_id TEXT, decision TEXT,"
        " match_probability DOUBLE, model_version TEXT, decided_at TIMESTAMP)"
    )
    con.executemany(
        "INSERT INTO links VALUES (?, ?, ?, 'link', 1.0, 'test', now())", LINKS
    )
    return con, truth


def test_evaluation_counts_pairs_children_merges_and_splits(master) -> None:
    con, truth = master
    result = evaluate_links(con, truth)
    # pairs: found 3 + 1 = 4, true 6 + 1 = 7, right 3 (the three P1 records in C1)
    assert result.precision == pytest.approx(3 / 4)
    assert result.recall == pytest.approx(3 / 7)
    assert result.f1 == pytest.approx(6 / 11)
    assert result.true_children == 3
    assert result.found_children == 4
    assert result.false_merges == 1
    assert result.missed_links == 2
    assert result.records == 7
    assert result.unlinked_records == 1


def test_merged_twins_are_counted_when_the_multiple_births_are_known(master) -> None:
    con, truth = master
    assert evaluate_links(con, truth).multiple_birth_merges is None
    truth.with_name("multiple_births.csv").write_text("person_id,set_id\nP2,H1\nP3,H1\n")
    assert evaluate_links(con, truth).multiple_birth_merges == 1  # C3 holds twins P2 and P3


def test_evaluation_of_a_perfect_master_is_one(master) -> None:
    con, truth = master
    con.execute("UPDATE links SET child_id = 'C1' WHERE feed = 'census'")
    con.execute("UPDATE links SET child_id = 'C4' WHERE feed = 'dwp' AND record_id = '2'")
    result = evaluate_links(con, truth)
    assert (result.precision, result.recall, result.f1) == (1.0, 1.0, 1.0)
    assert (result.false_merges, result.missed_links) == (0, 0)
    assert result.to_dict()["found_children"] == 3


def test_pairwise_score_of_no_pairs_is_vacuously_perfect() -> None:
    assert PairwiseScore.from_counts(0, 0, 0) == PairwiseScore(1.0, 1.0, 1.0)
    assert PairwiseScore.from_counts(0, 0, 5).recall == 0.0


def test_sweep_reports_blocking_recall_and_writes_offline_chart(tmp_path: Path) -> None:
    home = dict(surname="SMITH", date_of_birth="2006-03-14", sex="M")
    records = updates_to_arrow([
        Update("gro", "1", "birth", T, first_name="ALFRED", first_name_std="ALFRED",
               postcode="LS6 2AB", nhs_number="4857773456", **home),
        Update("nhs", "1", "registration", T, first_name="ALFRED", first_name_std="ALFRED",
               postcode="LS6 2AB", nhs_number="4857773456", **home),
        Update("census", "1", "census", T, first_name="ALFIE", first_name_std="ALFRED",
               postcode="M14 5RT", **home),
        Update("dwp", "2", "new_claim", T, first_name="ZOE", first_name_std="ZOE",
               surname="BROWN", date_of_birth="2001-01-01", postcode="B1 1AA"),
        # the same child as the first three, sharing no blocking key with them
        Update("census", "3", "census", T, first_name="XAVIER", first_name_std="XAVIER",
               surname="JONES", date_of_birth="1999-05-05"),
    ])
    truth = tmp_path / "truth.csv"
    truth.write_text("feed,record_id,person_id,bad_kind\ngro,1,P1,\nnhs,1,P1,\n"
                     "census,1,P1,\ndwp,2,P2,\ncensus,3,P1,\n")
    chart = tmp_path / "sweep.html"
    sweep = threshold_sweep(records, truth, DEFAULT_MODEL_PATH, chart)
    assert (sweep.records, sweep.blocked_pairs) == (5, 3)
    assert (sweep.true_pairs, sweep.true_pairs_blocked) == (6, 3)
    assert sweep.blocking_recall == 0.5
    assert sweep.at_link.precision == 1.0 and sweep.at_link.recall == 0.5
    assert sweep.review_threshold <= sweep.link_threshold
    assert "vegaEmbed" in chart.read_text() and "cdn.jsdelivr" not in chart.read_text()
    assert sweep.to_dict()["blocking_recall"] == 0.5
