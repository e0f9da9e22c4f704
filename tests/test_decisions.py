"""The decision rules of engine.decisions, on hand-made scored edges."""

from engine.config import DecisionConfig
from engine.decisions import Edge, decide, new_child_id

CONFIG = DecisionConfig(link_threshold=0.95, review_threshold=0.3, merge_support_threshold=0.3)


def no_support(groups: list[list[str]]) -> set[frozenset[str]]:
    return set()


def full_support(groups: list[list[str]]) -> set[frozenset[str]]:
    return {frozenset((a, b)) for group in groups for a in group for b in group if a < b}


def by_record(outcome):
    return {d.unique_id: d for d in outcome.decisions}


def test_record_with_no_edges_founds_a_new_child():
    outcome = decide(["gro:1"], [], [], CONFIG, no_support)
    decision = by_record(outcome)["gro:1"]
    assert (decision.decision, decision.child_id) == ("new", new_child_id("gro:1"))
    assert outcome.new_children == {new_child_id("gro:1")}


def test_strong_edge_links_to_the_existing_child():
    edges = [Edge("nhs:9", "gro:1", "C1", 0.999)]
    decision = by_record(decide(["nhs:9"], [], edges, CONFIG, no_support))["nhs:9"]
    assert (decision.decision, decision.child_id, decision.match_probability) == (
        "link", "C1", 0.999)


def test_two_new_records_of_one_new_child_make_one_child():
    edges = [Edge("gro:1", "nhs:2", None, 0.99)]
    outcome = decide(["gro:1", "nhs:2"], [], edges, CONFIG, no_support)
    decisions = by_record(outcome)
    assert decisions["gro:1"].decision == "new"
    assert decisions["nhs:2"].decision == "link"
    assert decisions["gro:1"].child_id == decisions["nhs:2"].child_id
    assert len(outcome.new_children) == 1


def test_records_sharing_a_source_key_in_one_batch_make_one_child():
    outcome = decide(["nhs:1", "nhs:2"], [["nhs:1", "nhs:2"]], [], CONFIG, no_support)
    assert len({d.child_id for d in outcome.decisions}) == 1


def test_middling_score_is_queued_for_review_never_linked():
    edges = [Edge("dwp:5", "gro:1", "C1", 0.6)]
    decision = by_record(decide(["dwp:5"], [], edges, CONFIG, no_support))["dwp:5"]
    assert decision.decision == "review"
    assert decision.child_id != "C1"
    assert decision.candidates == (("C1", 0.6),)


def test_supported_bridge_merges_children_into_the_smallest_id():
    edges = [Edge("nhs:7", "gro:1", "C1", 0.99), Edge("nhs:7", "dwp:3", "C2", 0.98)]
    outcome = decide(["nhs:7"], [], edges, CONFIG, full_support)
    assert outcome.merges == {"C2": "C1"}
    decision = by_record(outcome)["nhs:7"]
    assert (decision.decision, decision.child_id) == ("bridge", "C1")


def test_unsupported_bridge_merges_nothing_and_queues_the_record():
    edges = [Edge("nhs:7", "gro:1", "C1", 0.97), Edge("nhs:7", "dwp:3", "C2", 0.99)]
    outcome = decide(["nhs:7"], [], edges, CONFIG, no_support)
    assert outcome.merges == {}
    decision = by_record(outcome)["nhs:7"]
    assert (decision.decision, decision.child_id) == ("bridge", "C2")
    assert {c for c, _ in decision.candidates} == {"C1", "C2"}


def test_a_record_missing_its_first_name_cannot_chain_two_twins_into_one_child():
    # Two DWP claims of twins, one without a first name, score high against each other; their
    # child references differ, so DWP itself says they are two children.
    edges = [Edge("dwp:1", "dwp:2", None, 0.998)]
    identifiers = {"dwp:1": [("dwp", "CH1")], "dwp:2": [("dwp", "CH2")]}
    outcome = decide(["dwp:1", "dwp:2"], [], edges, CONFIG, no_support, identifiers)
    assert len({d.child_id for d in outcome.decisions}) == 2


def test_a_child_holding_another_key_of_the_feed_is_not_joined_but_the_strongest_edge_wins():
    edges = [Edge("nhs:9", "dwp:1", "C1", 0.99), Edge("nhs:9", "dwp:2", "C2", 0.999)]
    identifiers = {"nhs:9": [("nhs", "111")], "child:C1": [("nhs", "222")],
                   "child:C2": [("dwp", "CH2")]}
    outcome = decide(["nhs:9"], [], edges, CONFIG, full_support, identifiers)
    assert outcome.merges == {}
    assert by_record(outcome)["nhs:9"].child_id == "C2"
