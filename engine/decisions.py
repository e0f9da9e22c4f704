"""The decision per update, from the scored edges of one micro-batch (pure Python, no database).

Input: the batch's new records (not resolved by the xref fast path) and the scored edges from each
of them to existing records (which belong to children) and to other new records of the batch.
Output: for every new record a `Decision`, plus the merges of existing children a bridge justified.

Rules (README "Decisions"):

- edges at or above `link_threshold` join records and children into clusters (connected
  components), so two new records of one new child make one child and recall is not lost;
  new records that share a `(feed, source_key)` are joined too;
- a feed's own identifier is exclusive: a cluster never holds two different source keys of one
  feed (two DWP child references are two children in DWP's own view). Edges are taken strongest
  first and one that would join such clusters is skipped, so a record with a missing first name
  cannot chain two twins into one child;
- a cluster with no existing child is a new child: its earliest record (by `unique_id`) is `new`,
  the others `link`;
- a cluster with one existing child: every record is `link` to it;
- a cluster with two or more existing children is a bridge: the children are merged into one
  (the smallest `child_id` survives) when every one of them is supported — some pair of their own
  records scores at least `merge_support_threshold` (see `support`); otherwise nothing merges,
  each record goes to its best child (or a new child if it has none) and is queued for review;
- a record in no link-level edge whose best edge is at or above `review_threshold` becomes a new
  (provisional) child with decision `review` and is queued with its candidates.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from engine.config import DecisionConfig


@dataclass(frozen=True, slots=True)
class Edge:
    """A scored pair: new record `unique_id` vs a record of child `child_id` (None: a new record
    of this batch, `other_id`)."""

    unique_id: str
    other_id: str
    child_id: str | None
    match_probability: float


@dataclass(frozen=True, slots=True)
class Decision:
    unique_id: str
    child_id: str
    decision: str  # link | new | review | bridge
    match_probability: float | None
    candidates: tuple[tuple[str, float], ...] = ()  # (child_id or record id, probability) if queued


@dataclass
class BatchDecisions:
    decisions: list[Decision] = field(default_factory=list)
    merges: dict[str, str] = field(default_factory=dict)  # merged child_id -> surviving child_id
    new_children: set[str] = field(default_factory=set)


def new_child_id(founding_unique_id: str) -> str:
    """A child's id, derived from its founding record so that replays and restarts agree."""
    return "C" + hashlib.sha1(founding_unique_id.encode()).hexdigest()[:16].upper()


# support(groups of children) -> the pairs of children, within a group, whose own records score at
# or above the merge support threshold (computed by the resolver in SQL, all groups at once).
SupportLookup = Callable[[list[list[str]]], set[frozenset[str]]]


# The exclusive identifiers a node holds: (feed, source_key) pairs, for a new record (by its
# unique_id) or an existing child (by `child:` + its child_id).
Identifiers = Mapping[str, Iterable[tuple[str, str]]]


def decide(
    new_ids: Iterable[str],
    same_key_groups: Iterable[list[str]],
    edges: Iterable[Edge],
    config: DecisionConfig,
    support: SupportLookup,
    identifiers: Identifiers | None = None,
) -> BatchDecisions:
    """Decide every new record of a batch (see the module docstring for the rules)."""
    new_ids = sorted(new_ids)
    best = _best_edges(edges)
    clusters = _UnionFind(identifiers or {})
    for uid in new_ids:
        clusters.add(uid)
    for group in same_key_groups:
        for uid in group[1:]:
            clusters.union(group[0], uid)
    strong = sorted(
        (-edge.match_probability, uid, target)
        for uid, by_target in best.items()
        for target, edge in by_target.items()
        if edge.match_probability >= config.link_threshold
    )
    for _, uid, target in strong:
        clusters.union(uid, target)
    outcome = BatchDecisions()
    split = [_split(members) for members in clusters.components()]
    bridges = [children for records, children in split if records and len(children) >= 2]
    supported = support(bridges) if bridges else set()
    for records, children in split:
        if not records:
            continue
        if len(children) >= 2:
            _decide_bridge(records, children, best, supported, outcome)
        elif children:
            _link_all(records, children[0], best, "link", outcome)
        else:
            _decide_new_cluster(records, best, config, outcome)
    return outcome


CHILD_NODE = "child:"  # how an existing child is named among the record nodes


def _split(members: list[str]) -> tuple[list[str], list[str]]:
    """A cluster's new records and existing children, each sorted."""
    records = sorted(m for m in members if not m.startswith(CHILD_NODE))
    children = sorted(m.removeprefix(CHILD_NODE) for m in members if m.startswith(CHILD_NODE))
    return records, children


def _target(edge: Edge) -> str:
    return CHILD_NODE + edge.child_id if edge.child_id is not None else edge.other_id


def _best_edges(edges: Iterable[Edge]) -> dict[str, dict[str, Edge]]:
    """For each new record, its best edge per target (a child, or another new record)."""
    best: dict[str, dict[str, Edge]] = defaultdict(dict)
    for edge in edges:
        for uid, mirrored in ((edge.unique_id, edge), (edge.other_id, _mirror(edge))):
            if mirrored is None:
                continue
            target = _target(mirrored)
            current = best[uid].get(target)
            if current is None or mirrored.match_probability > current.match_probability:
                best[uid][target] = mirrored
    return best


def _mirror(edge: Edge) -> Edge | None:
    """A within-batch edge seen from its other end; edges to children have no other end here."""
    if edge.child_id is not None:
        return None
    return Edge(edge.other_id, edge.unique_id, None, edge.match_probability)


def _best_probability(uid: str, best: dict[str, dict[str, Edge]]) -> float | None:
    edges = best.get(uid)
    return max(e.match_probability for e in edges.values()) if edges else None


def _candidates(uid: str, best: dict[str, dict[str, Edge]]) -> tuple[tuple[str, float], ...]:
    ranked = sorted(best.get(uid, {}).values(), key=lambda e: -e.match_probability)
    return tuple((e.child_id or e.other_id, e.match_probability) for e in ranked)


def _link_all(
    records: list[str], child_id: str, best: dict[str, dict[str, Edge]], decision: str,
    outcome: BatchDecisions,
) -> None:
    for uid in records:
        outcome.decisions.append(
            Decision(uid, child_id, decision, _best_probability(uid, best))
        )


def _decide_new_cluster(
    records: list[str], best: dict[str, dict[str, Edge]], config: DecisionConfig,
    outcome: BatchDecisions,
) -> None:
    founder, *others = records
    child_id = new_child_id(founder)
    outcome.new_children.add(child_id)
    probability = _best_probability(founder, best)
    in_review_band = not others and probability is not None and (
        probability >= config.review_threshold
    )
    if in_review_band:
        outcome.decisions.append(
            Decision(founder, child_id, "review", probability, _candidates(founder, best))
        )
    else:
        outcome.decisions.append(Decision(founder, child_id, "new", probability))
    _link_all(others, child_id, best, "link", outcome)


def _decide_bridge(
    records: list[str], children: list[str], best: dict[str, dict[str, Edge]],
    supported: set[frozenset[str]], outcome: BatchDecisions,
) -> None:
    groups = _UnionFind()
    for child in children:
        groups.add(child)
    for first in children:
        for second in children:
            if first < second and frozenset((first, second)) in supported:
                groups.union(first, second)
    if len(groups.components()) == 1:
        survivor = children[0]
        for merged in children[1:]:
            outcome.merges[merged] = survivor
        _link_all(records, survivor, best, "bridge", outcome)
        return
    for uid in records:
        child_edges = [e for e in best.get(uid, {}).values() if e.child_id is not None]
        if child_edges:
            top = max(child_edges, key=lambda e: (e.match_probability, e.child_id))
            child_id = top.child_id
        else:
            child_id = new_child_id(uid)
            outcome.new_children.add(child_id)
        outcome.decisions.append(
            Decision(uid, child_id, "bridge", _best_probability(uid, best), _candidates(uid, best))
        )


class _UnionFind:
    """Connected components over string nodes (path halving, union by name for determinism)
    that refuses a union joining two different keys of one feed (see `Identifiers`)."""

    def __init__(self, identifiers: Identifiers | None = None) -> None:
        self.parent: dict[str, str] = {}
        self.identifiers = identifiers or {}
        self.keys: dict[str, dict[str, set[str]]] = {}  # root -> feed -> its source keys

    def add(self, node: str) -> None:
        if node not in self.parent:
            self.parent[node] = node
            keys: dict[str, set[str]] = defaultdict(set)
            for feed, key in self.identifiers.get(node, ()):
                keys[feed].add(key)
            self.keys[node] = keys

    def find(self, node: str) -> str:
        self.add(node)
        while self.parent[node] != node:
            self.parent[node] = self.parent[self.parent[node]]
            node = self.parent[node]
        return node

    def union(self, a: str, b: str) -> bool:
        """Join the components of a and b; False if they hold different keys of one feed."""
        root_a, root_b = self.find(a), self.find(b)
        if root_a == root_b:
            return True
        keys_a, keys_b = self.keys[root_a], self.keys[root_b]
        if any(feed in keys_b and keys_b[feed].isdisjoint(keys) for feed, keys in keys_a.items()):
            return False
        low, high = sorted((root_a, root_b))
        self.parent[high] = low
        for feed, keys in self.keys.pop(high).items():
            self.keys[low][feed] |= keys
        return True

    def components(self) -> list[list[str]]:
        groups: dict[str, list[str]] = defaultdict(list)
        for node in self.parent:
            groups[self.find(node)].append(node)
        return list(groups.values())
