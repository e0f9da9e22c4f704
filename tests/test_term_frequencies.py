"""A following engine holds the term frequencies in memory (engine.term_frequencies): the shares
it looks up are the ones the SQL reads from `term_frequencies`, batch after batch, and again
after a purge lowered the counts under it."""

from dataclasses import replace
from pathlib import Path

import pytest

from engine.candidates import (
    ADD_TERM_FREQUENCIES_SQL,
    count_term_frequencies_sql,
    term_frequency_shares_sql,
)
from engine.config import EngineConfig
from engine.governance.retention import _purge
from engine.master_store import open_master
from engine.resolution.neighbourhood import SupportLookup
from engine.resolver import Resolver
from engine.term_frequencies import HeldTermFrequencies
from linkage_models.scoring import CompiledModel
from streams.canonical import Update
from streams.generator import generate
from streams.snapshot import read_updates
from tests.test_entity_graph import NAMED_LATER, NAMELESS_CLAIM, TWIN_A, TWIN_B
from tests.test_governance_helpers import governed_master, ingest


@pytest.mark.parametrize("min_values", [0, 7, 1000])
def test_held_shares_are_the_sqls_to_the_last_bit(
    model: CompiledModel, tmp_path: Path, min_values: int
):
    con = open_master(tmp_path / "master.duckdb")
    con.execute("CREATE TEMP TABLE batch (first_name VARCHAR, surname VARCHAR)")
    con.execute("INSERT INTO batch VALUES ('AMELIA', 'JONES'), ('AMELIA', 'SMITH'), "
                "('OLIVER', 'JONES'), (NULL, 'JONES'), ('ISLA', NULL), ('ÉLODIE', 'NGUYỄN')")
    con.execute(count_term_frequencies_sql(model, "batch"))
    con.execute("CREATE TEMP TABLE probe (first_name VARCHAR, surname VARCHAR)")
    con.execute("INSERT INTO probe VALUES ('AMELIA', 'JONES'), ('NOBODY', 'SMITH'), "
                "(NULL, 'NGUYỄN'), ('ÉLODIE', NULL), ('OLIVER', 'UNSEEN')")
    held = HeldTermFrequencies(model.tf_columns, min_values)
    shares = f"SELECT * FROM ({term_frequency_shares_sql(model, 'probe', min_values)}) ORDER BY ALL"

    def held_shares() -> list[tuple]:
        return sorted(tuple(row.values()) for row in held.shares(con, "probe").to_pylist())

    assert held_shares() == con.execute(shares).fetchall()
    assert {row[1] for row in held_shares()} == {"AMELIA", "JONES", "SMITH", "NGUYỄN", "ÉLODIE",
                                                 "OLIVER"}
    # a batch's counts, added to the table, keep the held counts in step
    con.execute("CREATE TEMP TABLE next_batch (first_name VARCHAR, surname VARCHAR)")
    con.execute("INSERT INTO next_batch VALUES ('OLIVER', 'UNSEEN'), ('AMELIA', 'JONES'), "
                "('AMELIA', NULL)")
    con.register("batch_tf_counts", held.count(con, "next_batch"))
    con.execute(ADD_TERM_FREQUENCIES_SQL)
    assert held_shares() == con.execute(shares).fetchall()
    assert ("surname", "UNSEEN") in {row[:2] for row in held_shares()}
    con.close()


def test_a_following_engine_scores_as_a_loading_one_before_and_after_a_purge(
    model: CompiledModel, tmp_path: Path
):
    """The same batches into two masters, one resolved holding the term frequencies and one
    reading them; a purge between two batches lowers the counts in both. Every stored pair has
    the same probability in both (with no minimum count, every exact name match is adjusted by
    its share, so a held count gone stale would show)."""
    out = tmp_path / "generated"
    generate(30, 11, out)
    updates = [Update(**row) for row in read_updates(out / "feeds").updates.to_pylist()]
    config = EngineConfig()
    config = replace(config, scoring=replace(config.scoring, tf_min_values=0))
    masters = {following: open_master(tmp_path / f"following-{following}.duckdb")
               for following in (True, False)}
    resolvers = {following: Resolver(con, model, config, following=following)
                 for following, con in masters.items()}
    half = len(updates) // 2
    for start in range(0, len(updates), 9):
        if start <= half < start + 9:
            for con in masters.values():  # the child of the first record, and all it names
                child = con.execute("SELECT child_id FROM links WHERE feed = ? AND "
                                    "record_id = ?", [updates[0].feed, updates[0].record_id]
                                    ).fetchall()[0][0]
                con.begin()
                _purge(con, [child])
                con.commit()
        for resolver in resolvers.values():
            resolver.resolve(updates[start:start + 9])
    pairs, decisions, counts = {}, {}, {}
    for following, con in masters.items():
        pairs[following] = con.execute(
            "SELECT uid_a, uid_b, probability FROM scored_pairs ORDER BY ALL").fetchall()
        decisions[following] = con.execute(
            "SELECT feed, record_id, decision, match_probability FROM links ORDER BY ALL"
        ).fetchall()
        counts[following] = con.execute(
            "SELECT * FROM term_frequencies ORDER BY ALL").fetchall()
        con.close()
    assert counts[True] == counts[False]
    assert len(pairs[True]) > 50
    assert pairs[True] == pairs[False]
    assert decisions[True] == decisions[False]


def test_the_merge_support_check_scores_with_the_same_shares_held_or_read(
    model: CompiledModel, tmp_path: Path
):
    """The merge-support check (rule 3) scores two groups of records; a following engine's
    looks their shares up in the held counts (its `support_tf` is what it scored)."""
    con = governed_master(tmp_path / "master.duckdb")
    for update in (TWIN_A, TWIN_B, NAMELESS_CLAIM, NAMED_LATER):
        ingest(con, model, [update])
    scored = {}
    for held in (HeldTermFrequencies(model.tf_columns, 0), None):
        support = SupportLookup(con, model, 0.5, 0, with_new=False, held_tf=held)
        assert support([(["gro:a"], ["census:b", "dwp:d"])]) == [True]
        scored[held is None] = con.execute("SELECT * FROM support_tf ORDER BY ALL").fetchall()
    con.close()
    assert scored[True] == scored[False]
    assert len(scored[True]) == 3 and all(row[-1] is not None for row in scored[True])
