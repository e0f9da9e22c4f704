"""The correctable, order-neutral entity graph end to end: the real resolver, model and DuckDB
file; people's decisions through the audited stewardship acts."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import duckdb
import pytest

from engine.config import EngineConfig
from engine.governance.errors import GovernanceError
from engine.resolver import Resolver
from engine.stewardship import resolve_child_id
from linkage_models.scoring import CompiledModel
from tests.test_governance_helpers import act, add_staff, child_of, governed_master, ingest, update

KHAN = dict(surname="KHAN", sex="F", date_of_birth="2009-02-10", address_line1="1 HIGH STREET",
            town="LEEDS", postcode="LS6 2AB")
TWIN_A = update("gro", "a", first_name="AMELIA", source_key="R1", **KHAN,
                event_time="2009-02-10T09:00:00Z")
TWIN_B = update("census", "b", first_name="ISLA", source_key="UPN1", upn="UPN1", **KHAN,
                event_time="2013-10-03T08:00:00Z")
NAMELESS_CLAIM = update("dwp", "c", source_key="CH1", **KHAN, event_time="2009-03-01T10:00:00Z")
NAMED_LATER = update("dwp", "d", first_name="AMELIA", source_key="CH1", **KHAN,
                     event="change_of_name", event_time="2009-06-01T10:00:00Z")


def partition(con: duckdb.DuckDBPyConnection) -> list[list[str]]:
    rows = con.execute("""
        SELECT list(feed || ':' || record_id ORDER BY feed, record_id) FROM links
        GROUP BY child_id ORDER BY 1
    """).fetchall()
    return [row[0] for row in rows]


def assert_moves_reached_every_table(con: duckdb.DuckDBPyConnection) -> None:
    """Each link names its record by number and agrees with it on the child; each xref key
    names a child holding a record of that key (moves update all three by number)."""
    assert con.execute("""
        SELECT count(*) FROM links l LEFT JOIN records r USING (record_no)
        WHERE r.unique_id IS DISTINCT FROM l.feed || ':' || l.record_id
           OR r.child_id IS DISTINCT FROM l.child_id
    """).fetchall() == [(0,)]
    assert con.execute("""
        SELECT count(*) FROM xref x ANTI JOIN records r
        ON r.feed = x.feed AND r.source_key = x.source_key AND r.child_id = x.child_id
    """).fetchall() == [(0,)]


def decision(con: duckdb.DuckDBPyConnection, feed: str, record_id: str) -> str:
    return con.execute("SELECT decision FROM links WHERE feed = ? AND record_id = ?",
                       [feed, record_id]).fetchall()[0][0]


@pytest.fixture
def master(tmp_path: Path):
    con = governed_master(tmp_path / "master.duckdb")
    yield con
    con.close()


TWINS_APART = [["census:b"], ["dwp:c"], ["gro:a"]]


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_twins_and_a_nameless_claim_stay_apart_in_every_arrival_order(
    tmp_path: Path, model: CompiledModel, order: tuple[int, ...]
):
    con = governed_master(tmp_path / "m.duckdb")
    for i in order:
        ingest(con, model, [(TWIN_A, TWIN_B, NAMELESS_CLAIM)[i]])
    assert partition(con) == TWINS_APART
    assert decision(con, "dwp", "c") == "review"
    assert (decision(con, "gro", "a"), decision(con, "census", "b")) != ("review", "review")


def test_twins_and_a_nameless_claim_in_one_batch_stay_apart(master, model: CompiledModel):
    ingest(master, model, [TWIN_A, TWIN_B, NAMELESS_CLAIM])
    assert partition(master) == TWINS_APART
    reason, = master.execute("SELECT reason FROM review_queue WHERE record_id = 'c'").fetchone()
    assert reason.startswith("ambiguous")


def test_the_claims_first_name_arriving_later_settles_the_item_without_a_person(
    master, model: CompiledModel
):
    ingest(master, model, [TWIN_A, TWIN_B, NAMELESS_CLAIM])
    ingest(master, model, [NAMED_LATER])
    assert partition(master) == [["census:b"], ["dwp:c", "dwp:d", "gro:a"]]
    assert_moves_reached_every_table(master)
    resolved = master.execute(
        "SELECT resolved_at IS NOT NULL, resolved_by FROM review_queue WHERE record_id = 'c'"
    ).fetchone()
    assert resolved == (True, "redo")


def test_a_census_record_without_a_first_name_matching_two_twins_is_queued(
    master, model: CompiledModel
):
    ingest(master, model, [TWIN_A, update("gro", "b2", first_name="ISLA", source_key="R2",
                                           **KHAN, event_time="2009-02-10T09:05:00Z")])
    ingest(master, model, [update("census", "x", source_key="UPN9", upn="UPN9", **KHAN,
                                  event_time="2013-10-03T08:00:00Z")])
    assert partition(master) == [["census:x"], ["gro:a"], ["gro:b2"]]
    assert decision(master, "census", "x") == "review"


def test_every_decision_is_kept_with_its_evidence(master, model: CompiledModel):
    ingest(master, model, [TWIN_A, TWIN_B, NAMELESS_CLAIM])
    ingest(master, model, [NAMED_LATER])
    history = master.execute("""
        SELECT decision, decided_by, candidates FROM decision_history
        WHERE record_id = 'c' ORDER BY seq
    """).fetchall()
    assert [(d, by) for d, by, _ in history] == [("review", "engine"), ("link", "redo")]
    assert len(json.loads(history[0][2])) == 2  # both twins' children, with probabilities


def test_a_review_item_is_settled_by_a_data_manager_and_stays_settled(
    master, model: CompiledModel
):
    add_staff(master, model)
    ingest(master, model, [TWIN_A, TWIN_B, NAMELESS_CLAIM])
    items = act(master, model, "review.list", "dana").result
    assert [(i["feed"], i["record_id"]) for i in items] == [("dwp", "c")]
    twin_a = child_of(master, "gro", "a")
    result = act(master, model, "review.resolve", "dana", "claimant confirmed by phone",
                 item_id=items[0]["item_id"], link=twin_a, new=None).result
    assert result == {"child_id": twin_a}
    assert partition(master) == [["census:b"], ["dwp:c", "gro:a"]]
    ingest(master, model, [update("census", "b3", first_name="ISLA", source_key="UPN1",
                                  upn="UPN1", **KHAN, event_time="2014-10-03T08:00:00Z")])
    ingest(master, model, [TWIN_A, NAMELESS_CLAIM])  # a replay changes nothing
    assert partition(master) == [["census:b", "census:b3"], ["dwp:c", "gro:a"]]
    assert act(master, model, "review.list", "dana").result == []
    entry = master.execute(
        "SELECT \"user\", act, reason FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    assert entry == ("dana", "review.list", None)


def test_a_review_item_confirmed_as_new_is_not_queued_again(master, model: CompiledModel):
    add_staff(master, model)
    ingest(master, model, [TWIN_A, TWIN_B, NAMELESS_CLAIM])
    item = act(master, model, "review.list", "dana").result[0]
    act(master, model, "review.resolve", "dana", "a third sibling", item_id=item["item_id"],
        link=None, new=True)
    assert partition(master) == TWINS_APART
    assert decision(master, "dwp", "c") == "new"
    assert act(master, model, "review.list", "dana").result == []


def test_an_item_confirmed_as_new_leaves_the_queue_when_a_candidate_holds_several_keys(
    master, model: CompiledModel
):
    """Twin A's child holds her birth and her NHS registration (two keys, two nodes). The
    person's answer is a cannot-link with each candidate's founding record; the claim's match
    with the NHS registration must not queue it against twin A again (it did: the item stayed
    open after the person settled it)."""
    add_staff(master, model)
    nhs_a = update("nhs", "n1", first_name="AMELIA", source_key="N1", nhs_number="N1", **KHAN,
                   event_time="2009-02-20T09:00:00Z")
    ingest(master, model, [TWIN_A, nhs_a, TWIN_B, NAMELESS_CLAIM])
    item = act(master, model, "review.list", "dana").result[0]
    act(master, model, "review.resolve", "dana", "a third sibling", item_id=item["item_id"],
        link=None, new=True)
    assert partition(master) == [["census:b"], ["dwp:c"], ["gro:a", "nhs:n1"]]
    assert decision(master, "dwp", "c") == "new"
    assert act(master, model, "review.list", "dana").result == []


def test_an_unlinked_death_no_longer_makes_the_child_deceased(master, model: CompiledModel):
    add_staff(master, model)
    ingest(master, model, [TWIN_A])
    ingest(master, model, [update("nhs", "death", first_name="AMELIA", source_key="9434765919",
                                  nhs_number="9434765919", event="death",
                                  date_of_death="2012-05-01", **KHAN,
                                  event_time="2012-05-02T09:00:00Z")])
    child = child_of(master, "gro", "a")
    assert child_of(master, "nhs", "death") == child
    status = "SELECT status, date_of_death FROM children WHERE child_id = ?"
    assert master.execute(status, [child]).fetchone() == ("deceased", "2012-05-01")
    act(master, model, "unlink", "dana", "death registered against the wrong child",
        record="nhs:death")
    assert child_of(master, "nhs", "death") != child
    assert master.execute(status, [child]).fetchone() == ("active", None)


def split_then_a_census_matching_both_parts(
    master, model: CompiledModel, resolver: Resolver | None = None
) -> tuple[str, str]:
    """Amelia's birth and NHS registration, split by a data manager into two children, then a
    census record matching both: (the child kept, the child split off). Each batch is resolved
    by `resolver` if given (an engine running throughout), else by a resolver of its own."""
    resolve = resolver.resolve if resolver else lambda updates: ingest(master, model, updates)
    add_staff(master, model)
    resolve([TWIN_A, update("nhs", "n1", first_name="AMELIA", source_key="N1", nhs_number="N1",
                            **KHAN, event_time="2009-02-20T09:00:00Z")])
    child = child_of(master, "gro", "a")
    assert child_of(master, "nhs", "n1") == child
    new = act(master, model, "split", "dana", "two children registered as one",
              child_id=child, records="nhs:n1").result["child_id"]
    assert new != child and child_of(master, "nhs", "n1") == new
    resolve([CENSUS_OF_BOTH])
    return child, new


CENSUS_OF_BOTH = update("census", "both", first_name="AMELIA", source_key="UPN5", upn="UPN5",
                        **KHAN, event_time="2013-10-03T08:00:00Z")


@pytest.mark.parametrize("engine", ["started for each batch", "running throughout"])
def test_a_split_stays_split_and_a_record_matching_both_parts_goes_to_review(
    master, model: CompiledModel, engine: str
):
    """A running engine finds people's constraints by key (engine.record_locator): the
    cannot-links of a split made while it runs must be found at its next batch."""
    resolver = (Resolver(master, model, EngineConfig(), following=True)
                if engine == "running throughout" else None)
    child, new = split_then_a_census_matching_both_parts(master, model, resolver)
    assert child_of(master, "gro", "a") != child_of(master, "nhs", "n1")
    # a person said they are two children: a record matching both is for a person too
    assert child_of(master, "census", "both") not in {child, new}
    reason, = master.execute(
        "SELECT reason FROM review_queue WHERE record_id = 'both' AND resolved_at IS NULL"
    ).fetchone()
    assert reason.startswith("ambiguous")


def test_the_record_matching_both_parts_of_a_split_stays_where_a_person_puts_it(
    master, model: CompiledModel
):
    child, _ = split_then_a_census_matching_both_parts(master, model)
    (item,) = act(master, model, "review.list", "dana").result
    act(master, model, "review.resolve", "dana", "the school confirmed", item_id=item["item_id"],
        link=child, new=None)
    assert child_of(master, "census", "both") == child
    ingest(master, model, [update("census", "both2", first_name="AMELIA", source_key="UPN5",
                                  upn="UPN5", **KHAN, event_time="2014-10-03T08:00:00Z")])
    assert partition(master) == [["census:both", "census:both2", "gro:a"], ["nhs:n1"]]
    assert act(master, model, "review.list", "dana").result == []


def merge_with_a_shielded_child(master, model: CompiledModel) -> tuple[str, str]:
    """Twin B's census shielded, then merged by a data manager with twin A's birth: (the
    survivor, the id merged away)."""
    add_staff(master, model)
    ingest(master, model, [TWIN_A, TWIN_B])
    a, b = child_of(master, "gro", "a"), child_of(master, "census", "b")
    act(master, model, "shield", "dana", "at risk", child_id=b, unshield=None)
    survivor = act(master, model, "merge", "dana", "one child after all", child_id=a,
                   other_child_id=b).result["child_id"]
    return survivor, b if survivor == a else a


def shielded(master, child_id: str) -> bool:
    return master.execute("SELECT shielded FROM children WHERE child_id = ?",
                          [child_id]).fetchall()[0][0]


def test_a_record_the_engine_moves_out_of_a_shielded_child_takes_the_shield_with_it(
    master, model: CompiledModel
):
    """The claim joined twin A, who was then shielded; twin B's arrival makes it ambiguous and
    the engine moves it to a provisional child of its own, written in the same batch: the safety
    rule finds that row, and A's, by key."""
    add_staff(master, model)
    ingest(master, model, [TWIN_A, NAMELESS_CLAIM])
    twin_a = child_of(master, "gro", "a")
    assert child_of(master, "dwp", "c") == twin_a
    act(master, model, "shield", "dana", "at risk", child_id=twin_a, unshield=None)
    ingest(master, model, [TWIN_B])
    claim = child_of(master, "dwp", "c")
    assert claim != twin_a and decision(master, "dwp", "c") == "review"
    assert shielded(master, claim)


def test_a_merge_keeps_the_shield_and_the_merged_id_resolves_to_the_survivor(
    master, model: CompiledModel
):
    survivor, merged = merge_with_a_shielded_child(master, model)
    assert resolve_child_id(master, merged) == survivor
    assert shielded(master, survivor)
    assert partition(master) == [["census:b", "gro:a"]]


def test_an_unshield_sticks_through_later_batches(master, model: CompiledModel):
    survivor, _ = merge_with_a_shielded_child(master, model)
    act(master, model, "shield", "dana", "reviewed", child_id=survivor, unshield=True)
    ingest(master, model, [update("nhs", "n7", first_name="AMELIA", source_key="N7",
                                  nhs_number="N7", **KHAN, event_time="2010-01-01T09:00:00Z")])
    assert not shielded(master, survivor)


def test_a_later_merge_by_a_person_corrects_an_earlier_split(master, model: CompiledModel):
    add_staff(master, model)
    ingest(master, model, [TWIN_A, NAMED_LATER, update(
        "nhs", "n1", first_name="AMELIA", source_key="N1", nhs_number="N1", **KHAN,
        event_time="2009-02-20T09:00:00Z")])
    child = child_of(master, "gro", "a")
    assert partition(master) == [["dwp:d", "gro:a", "nhs:n1"]]
    new = act(master, model, "split", "dana", "looked like two children", child_id=child,
              records="dwp:d").result["child_id"]
    assert partition(master) == [["dwp:d"], ["gro:a", "nhs:n1"]]
    assert_moves_reached_every_table(master)
    act(master, model, "merge", "dana", "the same child after all", child_id=new,
        other_child_id=child)
    assert partition(master) == [["dwp:d", "gro:a", "nhs:n1"]]
    assert_moves_reached_every_table(master)


def test_only_a_data_manager_may_correct_the_index(master, model: CompiledModel):
    add_staff(master, model)
    ingest(master, model, [TWIN_A])
    with pytest.raises(GovernanceError):
        act(master, model, "unlink", "pat", "curious", record="gro:a")


def test_an_ambiguous_record_is_decided_again_only_beside_every_child_it_could_belong_to(
    master, model: CompiledModel
):
    """Twin B's nameless census record matches both twins' children and is queued; a later
    record of twin A touching it must not settle it to twin A while twin B's child is out of
    sight."""
    twin_b = update("gro", "b", first_name="ISLA", source_key="R2", **KHAN,
                    event_time="2009-02-10T09:05:00Z")
    ingest(master, model, [TWIN_A, twin_b])
    ingest(master, model, [update("census", "x", source_key="UPN9", upn="UPN9", **KHAN,
                                  event_time="2013-10-03T08:00:00Z")])
    assert decision(master, "census", "x") == "review"
    ingest(master, model, [update("census", "a2", first_name="AMELIA", source_key="UPN1",
                                  upn="UPN1", **KHAN, event_time="2013-10-04T08:00:00Z")])
    assert decision(master, "census", "x") == "review"
    assert child_of(master, "census", "x") not in {child_of(master, "gro", "a"),
                                                    child_of(master, "gro", "b")}
