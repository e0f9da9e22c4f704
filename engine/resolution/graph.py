"""The decision core: one rule over a neighbourhood of records, whatever order they arrived in.

Pure Python, no database. The input (`Neighbourhood`) is a set of records — a batch's new records
and every record of the children they touched — with their scored pairs (at or above the review
threshold), the current child of each existing record, and the people's constraints (must-link,
cannot-link). The output (`ChangeSet`) is where every record now belongs: the placements of the
new records and of every existing record whose child or decision changed, the children merged
away, the children that lost records, the new children. A batch and a person's act both go
through `decide`; the rule is the same whether the records arrived in one batch or many.

The rule (README "Decisions", docs/stewardship.md):

1. *Nodes.* Records sharing a source key (`feed:key`) are one node, and so are records a person
   must-linked, unless a person said two of them are different (cannot-link).
2. *Clusters.* Link-level pairs (>= `link_threshold`) join nodes, strongest first, unless the
   join would put two keys of one exclusive feed, or two nodes a person cannot-linked, in one
   cluster (the join is *refused*).
3. *Ambiguity goes to a person.* A node is **ambiguous** — a provisional child of its own, queued
   for review, whose key is no fast path — when it is a link-level match for two clusters that
   cannot be one child: (a) its link-level pairs reach two clusters whose join was refused (by an
   exclusive key, or by a person's cannot-link: twins a person told apart are two children a
   nameless claim may belong to either of), not counting a cluster a person said the node itself is
   no part of, or (b) it is the only thing holding its cluster together (an articulation node of
   the cluster's graph of pairs >= `merge_support_threshold`) and the parts it holds together are
   unsupported — no pair of records across them scores at least `merge_support_threshold`, all
   pairs compared (`SupportLookup`). Twins whose own records disagree on the first name are never
   supported, so a claim without a first name that matches both is ambiguous. A node whose own
   records vote — one of them reaches only one of the parts — is not ambiguous: it joins that part
   and the other parts become children of their own. That is how later evidence (the claim's first
   name arriving in a change of name) settles an earlier ambiguity without a person. So does a
   clear margin: a node whose best pair with one part is `ambiguity_margin_bits` stronger than with
   any other joins it.
4. *Review band.* A node alone in its cluster whose best pair with an earlier node (event-time
   order) of another cluster, not one a person said it is no part of, is at or above
   `review_threshold` is queued for review, as a provisional child of its own.
5. *Stable ids.* A cluster keeps the id of the child holding most of its records (then the child
   with the earliest record); the other children in it are merged into that one, and an id merged
   away keeps resolving to its survivor (the store). A cluster holding no child's records is a new
   child, named after its founding record; a part split off a child that stays elsewhere is named
   after its records and that child, and never takes the id of a child of the neighbourhood (a
   part split off a part split off before would otherwise be named as the first part was, and
   two clusters would share one child).
"""

from __future__ import annotations

import gc
import hashlib
import itertools
import math
from collections import defaultdict
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from engine.config import DecisionConfig

# An existing record's decision as the neighbourhood knows it: `review` (an open item) or
# settled (its label in `links` — new, link, bridge — stays unless its child changes).
SETTLED = "settled"


@dataclass(frozen=True, slots=True)
class Record:
    """One record of the neighbourhood. `child_id` is None for a record new in this batch;
    `order` sorts records by event time (the founding record of a child sorts first);
    `decision` is `review` or SETTLED for an existing record."""

    unique_id: str
    child_id: str | None
    feed: str
    source_key: str | None
    order: str
    decision: str | None = None


@dataclass(frozen=True, slots=True)
class Pair:
    """A scored pair of records (at or above the review threshold)."""

    a: str
    b: str
    probability: float


@dataclass
class Neighbourhood:
    records: dict[str, Record]
    pairs: list[Pair] = field(default_factory=list)
    must_link: list[tuple[str, str]] = field(default_factory=list)
    cannot_link: list[tuple[str, str]] = field(default_factory=list)


# support(queries) -> for each query (two groups of record ids), whether some pair of records
# across the two groups scores at least the merge-support threshold (all pairs compared).
SupportLookup = Callable[[list[tuple[list[str], list[str]]]], list[bool]]


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a record goes: `decision` is new | link | bridge | review; `candidates` are the
    children it scored against (best pair each), strongest first."""

    unique_id: str
    child_id: str
    decision: str
    match_probability: float | None
    candidates: tuple[tuple[str, float], ...] = ()
    reason: str | None = None  # why a person must look: AMBIGUOUS or REVIEW_BAND


AMBIGUOUS = "ambiguous: a link-level match for children that cannot be one child"
REVIEW_BAND = "review band: a middling match, never linked silently"


@dataclass
class ChangeSet:
    placements: list[Placement] = field(default_factory=list)
    merged: dict[str, str] = field(default_factory=dict)  # child id -> the child it went into
    new_children: set[str] = field(default_factory=set)
    shrunk: set[str] = field(default_factory=set)  # kept their id but lost records


def new_child_id(founding_unique_id: str) -> str:
    """A child's id, derived from its founding record so that replays and restarts agree."""
    return "C" + hashlib.sha1(founding_unique_id.encode()).hexdigest()[:16].upper()


# A cluster is split at most this many times per decision (each split costs a support lookup).
MAX_SPLIT_ROUNDS = 4


def decide(hood: Neighbourhood, config: DecisionConfig, support: SupportLookup) -> ChangeSet:
    """Place every record of the neighbourhood (see the module docstring for the rule)."""
    with _cyclic_gc_paused():
        graph = _NodeGraph(hood, config)
        clusters, refused = graph.cluster()
        ambiguous: set[str] = set()
        clusters = _split_ambiguous(graph, clusters, refused, ambiguous, support)
        return _placements(graph, clusters, ambiguous)


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """A large neighbourhood makes hundreds of thousands of small containers that all live
    until `decide` returns and hold no cycles: the cyclic collector would walk them (and the rest
    of the heap) many times over to free nothing (a quarter of decide's time on a 75k-record
    neighbourhood)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# ---------------------------------------------------------------- nodes and clusters


class _NodeGraph:
    """Records grouped into nodes, with node-level pairs and constraints. A pair of nodes (or
    records) is keyed by the ordered tuple `_pair(a, b)`."""

    def __init__(self, hood: Neighbourhood, config: DecisionConfig) -> None:
        self.hood = hood
        self.config = config
        # records in event-time order, and each one's place in it (a sort key)
        self.in_order = sorted(hood.records, key=lambda u: hood.records[u].order)
        self.rank = {uid: i for i, uid in enumerate(self.in_order)}
        cannot = {_pair(a, b) for a, b in hood.cannot_link if a != b}
        self.node_of = _group_nodes(hood, self.in_order, cannot)
        self.members: dict[str, list[str]] = defaultdict(list)
        for uid in self.in_order:
            self.members[self.node_of[uid]].append(uid)
        self.order = {node: hood.records[uids[0]].order for node, uids in self.members.items()}
        self.apart: set[tuple[str, str]] = set()  # node pairs a split put in different clusters
        # nodes a person joined: only there can one record hold the node to a part of its cluster
        self.joined_by_people = {
            self.node_of[a] for a, b in hood.must_link
            if a in self.node_of and b in self.node_of and self.node_of[a] == self.node_of[b]
        }
        # node -> the nodes a person said are other children than it
        self.cannot_with: dict[str, set[str]] = defaultdict(set)
        for a, b in cannot:
            if a in self.node_of and b in self.node_of:
                self.cannot_with[self.node_of[a]].add(self.node_of[b])
                self.cannot_with[self.node_of[b]].add(self.node_of[a])
        self.record_pairs: dict[str, list[tuple[str, float]]] = defaultdict(list)
        # node -> its neighbour nodes, each with the best probability of a pair between them
        self.neighbours: dict[str, dict[str, float]] = defaultdict(dict)
        self._add_pairs(hood.pairs)

    def _add_pairs(self, pairs: list[Pair]) -> None:
        node_of, record_pairs, neighbours = self.node_of, self.record_pairs, self.neighbours
        for pair in pairs:
            a, b, probability = pair.a, pair.b, pair.probability
            if a not in node_of or b not in node_of:
                continue
            record_pairs[a].append((b, probability))
            record_pairs[b].append((a, probability))
            na, nb = node_of[a], node_of[b]
            if na != nb and probability > neighbours[na].get(nb, -1.0):
                neighbours[na][nb] = neighbours[nb][na] = probability

    def exclusive_keys(self) -> dict[str, dict[str, set[str]]]:
        """Node -> its exclusive feeds' source keys, for the nodes that have any."""
        exclusive = frozenset(self.config.exclusive_key_feeds)
        keys: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        for uid, record in self.hood.records.items():
            if record.source_key is not None and record.feed in exclusive:
                keys[self.node_of[uid]][record.feed].add(record.source_key)
        return keys

    def barred(self, node: str, cluster_of: dict[str, int]) -> set[int]:
        """The clusters holding a node a person said is another child than `node`: the person
        settled those, so `node` is neither ambiguous between them nor queued against them."""
        return {cluster_of[other] for other in self.cannot_with.get(node, ())}

    def is_link(self, probability: float) -> bool:
        return probability >= self.config.link_threshold

    def cluster(self) -> tuple[list[set[str]], set[tuple[str, str]]]:
        """Clusters of nodes (rule 2) and the node pairs whose join was refused (by an exclusive
        key or a person's cannot-link)."""
        clusters = _ConstrainedUnion(self)
        link = self.config.link_threshold
        strong = sorted(
            (-p, na, nb) for na, others in self.neighbours.items() for nb, p in others.items()
            if na < nb and p >= link
        )
        refused: set[tuple[str, str]] = set()
        for _, na, nb in strong:
            if clusters.union(na, nb) != _JOINED:
                refused.add((na, nb))
        return clusters.components(), refused


def _pair(a: str, b: str) -> tuple[str, str]:
    """The key of an unordered pair of ids."""
    return (a, b) if a < b else (b, a)


def _group_nodes(
    hood: Neighbourhood, in_order: list[str], cannot: set[tuple[str, str]]
) -> dict[str, str]:
    """Record id -> node id: records sharing a source key, and must-linked records, are one
    node, except where a person cannot-linked two of them."""
    parent = {uid: uid for uid in in_order}
    # each root's records, kept only to check cannot-links
    members = {uid: {uid} for uid in in_order} if cannot else {}

    def find(uid: str) -> str:
        while parent[uid] != uid:
            parent[uid] = parent[parent[uid]]
            uid = parent[uid]
        return uid

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra == rb or (cannot and any(
            _pair(x, y) in cannot for x in members[ra] for y in members[rb]
        )):
            return
        low, high = _pair(ra, rb)
        parent[high] = low
        if cannot:
            members[low] |= members.pop(high)

    first_of_key: dict[tuple[str, str], str] = {}
    for uid in in_order:
        record = hood.records[uid]
        if record.source_key is not None:
            first = first_of_key.setdefault((record.feed, record.source_key), uid)
            if first != uid:
                union(first, uid)
    for a, b in hood.must_link:
        if a in parent and b in parent:
            union(a, b)
    return {uid: find(uid) for uid in hood.records}


_JOINED, _KEY_CONFLICT, _CANNOT_LINK = "joined", "key conflict", "cannot-link"


class _ConstrainedUnion:
    """Union-find over nodes refusing joins that break an exclusive key or a cannot-link."""

    def __init__(self, graph: _NodeGraph) -> None:
        self.graph = graph
        self.parent = {node: node for node in graph.members}
        self.keys = graph.exclusive_keys()  # per root: its nodes' exclusive keys
        # per root: the roots holding a node a person said is another child than one of its
        # own (kept per root, not checked pair by pair at each join: a neighbourhood people
        # worked may hold thousands of cannot-links, and a dense one tries ~n²/2 joins)
        self.cannot = {node: set(others) for node, others in graph.cannot_with.items()}

    def find(self, node: str) -> str:
        while self.parent[node] != node:
            self.parent[node] = self.parent[self.parent[node]]
            node = self.parent[node]
        return node

    def union(self, a: str, b: str) -> str:
        """_JOINED, or why the join is refused."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return _JOINED
        if rb in self.cannot.get(ra, ()):
            return _CANNOT_LINK
        ka, kb = self.keys.get(ra), self.keys.get(rb)
        if ka and kb and any(feed in kb and kb[feed] != keys for feed, keys in ka.items()):
            return _KEY_CONFLICT
        low, high = _pair(ra, rb)
        self.parent[high] = low
        if high in self.keys:
            for feed, keys in self.keys.pop(high).items():
                self.keys[low][feed] |= keys
        if high in self.cannot:
            barred = self.cannot.pop(high)
            for other in barred:
                self.cannot[other].remove(high)
                self.cannot[other].add(low)
            self.cannot.setdefault(low, set()).update(barred)
        return _JOINED

    def components(self) -> list[set[str]]:
        """The clusters, in the order of their roots among the nodes."""
        roots: dict[str, set[str]] = {
            node: set() for node, parent in self.parent.items() if parent == node
        }
        for node in self.parent:
            roots[self.find(node)].add(node)
        return list(roots.values())


# ---------------------------------------------------------------- ambiguity (rule 3)


@dataclass(frozen=True)
class _Cut:
    """A place where a cluster may fall apart: without `node` (kind "node": an articulation
    node, or a torn one) or without one record of `node` (kind "record": the only record of a
    node a person joined holding some parts to the rest), the cluster's records fall into
    `record_parts`, i.e. the nodes `node_parts` (for kind "record", the node's other records
    keep it in their part)."""

    kind: str
    node: str
    record_parts: list[list[str]]
    node_parts: list[set[str]]

    def queries(self) -> list[tuple[list[str], list[str]]]:
        parts = self.record_parts
        return [(parts[i], parts[j]) for i in range(len(parts)) for j in range(i + 1, len(parts))]


def _split_ambiguous(
    graph: _NodeGraph, clusters: list[set[str]], refused: set[tuple[str, str]],
    ambiguous: set[str], support: SupportLookup,
) -> list[set[str]]:
    """Split clusters at ambiguous nodes until none is left (or the rounds run out)."""
    cluster_of = {node: i for i, c in enumerate(clusters) for node in c}
    torn = _torn_nodes(graph, refused, clusters, cluster_of)
    # Two nodes have no articulation node: only a torn one, or a record of a node a person
    # joined, can split them.
    splittable = torn | graph.joined_by_people
    settled = [c for c in clusters if len(c) == 1 or (len(c) == 2 and not c & splittable)]
    pending = [c for c in clusters if len(c) > 2 or (len(c) == 2 and c & splittable)]
    for _ in range(MAX_SPLIT_ROUNDS):
        if not pending:
            break
        checks = [(cluster, _cuts(graph, cluster, torn)) for cluster in pending]
        queries = [query for _, cuts in checks for cut in cuts for query in cut.queries()]
        answers = iter(support(queries)) if queries else iter(())
        pending_next = []
        for cluster, cuts in checks:
            split = None
            for cut in cuts:
                supported = [next(answers) for _ in cut.queries()]
                if split is None:
                    split = _resolve_cut(graph, cut, supported, cut.node in torn, ambiguous)
            if split is None:
                settled.append(cluster)
            else:
                settled += [part for part in split if len(part) == 1]
                pending_next += [part for part in split if len(part) > 1]
        pending = pending_next
    return settled + pending


def _records_of(graph: _NodeGraph, nodes: Collection[str]) -> list[str]:
    """The records of `nodes`, founding record first (event-time order)."""
    if len(nodes) == 1:
        (node,) = nodes
        return list(graph.members[node])
    return sorted((uid for node in nodes for uid in graph.members[node]),
                  key=graph.rank.__getitem__)


def _torn_nodes(
    graph: _NodeGraph, refused: set[tuple[str, str]], clusters: list[set[str]],
    cluster_of: dict[str, int],
) -> set[str]:
    """Rule 3(a): endpoints of a refused join whose link-level pairs reach two or more clusters,
    unless their own records vote for their cluster (one reaches it alone, none reaches another
    cluster alone). A cluster `graph.barred` for the node does not count."""
    torn = set()
    # each endpoint once: a node of a dense cluster is in a refused join with most of the others
    for node in {node for key in refused for node in key}:
        barred = graph.barred(node, cluster_of)
        reached = {
            cluster_of[other] for other, p in graph.neighbours[node].items()
            if graph.is_link(p)
        } - barred
        if len(reached) < 2:
            continue
        candidates = sorted(reached | {cluster_of[node]})
        decisive = _decisive(graph, node, [clusters[i] for i in candidates])
        if decisive is not None and candidates[decisive] == cluster_of[node]:
            continue  # its own cluster is the clearly stronger match
        votes = set()
        for uid in graph.members[node]:
            alone = {
                cluster_of[graph.node_of[other]] for other, p in graph.record_pairs[uid]
                if graph.is_link(p) and graph.node_of[other] != node
            } - barred
            if len(alone) == 1:
                votes |= alone
        if votes != {cluster_of[node]}:
            torn.add(node)
    return torn


def _cuts(graph: _NodeGraph, cluster: set[str], torn: set[str]) -> list[_Cut]:
    """Every torn node, articulation node and articulation record (of a multi-record node) of
    the cluster, in a deterministic order."""
    supporting = graph.config.merge_support_threshold
    adjacency = {
        node: [other for other, p in graph.neighbours[node].items()
               if other in cluster and p >= supporting]
        for node in cluster
    }
    cuts = []
    for node in sorted(_articulation_nodes(adjacency) | (torn & cluster),
                       key=lambda n: graph.order[n]):
        parts = sorted(_components(adjacency, cluster - {node}),
                       key=lambda p: min(graph.order[n] for n in p))
        if len(parts) >= 2 or node in torn:
            cuts.append(_Cut("node", node, [_records_of(graph, p) for p in parts], parts))
    if cluster & graph.joined_by_people:
        cuts += _record_cuts(graph, cluster, supporting)
    return cuts


def _record_cuts(graph: _NodeGraph, cluster: set[str], supporting: float) -> list[_Cut]:
    """Records of nodes a person joined that alone hold some parts of the cluster to the rest
    (a node's records are all adjacent to one another): a person linking a nameless claim to one
    twin does not pull in the other. Records sharing a source key are one person's by the
    source's own word, so a disagreeing one among them is noise, not a cut."""
    records = set(_records_of(graph, cluster))
    adjacency = {
        uid: [other for other, p in graph.record_pairs[uid]
              if other in records and p >= supporting]
        + [mate for mate in graph.members[graph.node_of[uid]] if mate != uid]
        for uid in records
    }
    rank = graph.rank.__getitem__
    cuts = []
    for uid in sorted(_articulation_nodes(adjacency), key=rank):
        node = graph.node_of[uid]
        if node not in graph.joined_by_people:
            continue
        parts = sorted(_components(adjacency, records - {uid}),
                       key=lambda p: min(map(rank, p)))
        record_parts = [sorted(p, key=rank) for p in parts]
        node_parts = [{graph.node_of[u] for u in p} for p in parts]
        cuts.append(_Cut("record", node, record_parts, node_parts))
    return cuts


def _resolve_cut(
    graph: _NodeGraph, cut: _Cut, supported: list[bool], torn: bool, ambiguous: set[str]
) -> list[set[str]] | None:
    """The cluster's new clusters if the cut splits it (rule 3), None if it holds. Nodes that
    end in different clusters are kept apart from then on (`graph.apart`): a pair between them
    does not queue either for review."""
    split = _cut_clusters(graph, cut, supported, torn, ambiguous)
    if split is not None:
        for first, second in itertools.combinations(split, 2):
            graph.apart |= {
                _pair(node, other) for node in first for other in graph.neighbours[node]
                if other in second
            }
    return split


def _cut_clusters(
    graph: _NodeGraph, cut: _Cut, supported: list[bool], torn: bool, ambiguous: set[str]
) -> list[set[str]] | None:
    groups = _join_supported(cut.node_parts, supported)
    if cut.kind == "record":
        if len(groups) < 2:
            return None
        return groups  # the node stays with its other records; unsupported parts go
    if torn:
        ambiguous.add(cut.node)
        return [{cut.node}, *groups]
    if len(groups) < 2:
        return None
    votes = _votes(graph, cut.node, groups)
    chosen = next(iter(votes)) if len(votes) == 1 else _decisive(graph, cut.node, groups)
    if chosen is not None:
        return [groups[chosen] | {cut.node}] + [g for i, g in enumerate(groups) if i != chosen]
    ambiguous.add(cut.node)
    return [{cut.node}, *groups]


def _join_supported(parts: list[set[str]], supported: list[bool]) -> list[set[str]]:
    parent = list(range(len(parts)))

    def find(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    answers = iter(supported)
    for i in range(len(parts)):
        for j in range(i + 1, len(parts)):
            if next(answers):
                parent[find(j)] = find(i)
    groups: dict[int, set[str]] = defaultdict(set)
    for i, part in enumerate(parts):
        groups[find(i)] |= part
    return list(groups.values())


def _decisive(graph: _NodeGraph, node: str, groups: list[set[str]]) -> int | None:
    """The index of the group `node` matches by a clear margin (ambiguity_margin_bits) over
    every other, by its best pair with each; None if no group does."""
    group_of = {other: i for i, group in enumerate(groups) for other in group}
    best = [-math.inf] * len(groups)
    for other, p in graph.neighbours[node].items():
        i = group_of.get(other)
        if i is not None:
            best[i] = max(best[i], _weight(p))
    weights = sorted(zip(best, range(len(groups)), strict=True))
    if len(weights) >= 2 and weights[-1][0] - weights[-2][0] >= (
        graph.config.ambiguity_margin_bits
    ):
        return weights[-1][1]
    return None


def _weight(probability: float) -> float:
    """Match weight (log2 Bayes factor at the model's prior) of a probability."""
    p = min(max(probability, 1e-15), 1 - 1e-15)
    return math.log2(p / (1 - p))


def _votes(graph: _NodeGraph, node: str, groups: list[set[str]]) -> set[int]:
    """The groups that some record of `node` reaches alone (all its pairs go to that group)."""
    group_of = {n: i for i, group in enumerate(groups) for n in group}
    votes = set()
    for uid in graph.members[node]:
        reached = {
            group_of[graph.node_of[other]] for other, _ in graph.record_pairs[uid]
            if graph.node_of[other] in group_of
        }
        if len(reached) == 1:
            votes |= reached
    return votes


def _articulation_nodes(adjacency: dict[str, list[str]]) -> set[str]:
    """Nodes whose removal disconnects their component (iterative Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    result: set[str] = set()
    counter = 0
    for root in sorted(adjacency):
        if root in index:
            continue
        index[root] = low[root] = counter
        counter += 1
        root_children = 0
        stack = [(root, None, iter(sorted(adjacency[root])))]
        while stack:
            node, parent, neighbours = stack[-1]
            advanced = False
            for other in neighbours:
                if other not in index:
                    index[other] = low[other] = counter
                    counter += 1
                    if node == root:
                        root_children += 1
                    stack.append((other, node, iter(sorted(adjacency[other]))))
                    advanced = True
                    break
                if other != parent:
                    low[node] = min(low[node], index[other])
            if advanced:
                continue
            stack.pop()
            if parent is not None:
                low[parent] = min(low[parent], low[node])
                if parent != root and low[node] >= index[parent]:
                    result.add(parent)
        if root_children >= 2:
            result.add(root)
    return result


def _components(adjacency: dict[str, list[str]], nodes: set[str]) -> list[set[str]]:
    seen: set[str] = set()
    parts = []
    for start in sorted(nodes):
        if start in seen:
            continue
        part, stack = {start}, [start]
        seen.add(start)
        while stack:
            for other in adjacency[stack.pop()]:
                if other in nodes and other not in seen:
                    seen.add(other)
                    part.add(other)
                    stack.append(other)
        parts.append(part)
    return parts


# ---------------------------------------------------------------- placements (rules 4, 5)


def _placements(graph: _NodeGraph, clusters: list[set[str]], ambiguous: set[str]) -> ChangeSet:
    hood = graph.hood
    records_of = [_records_of(graph, cluster) for cluster in clusters]
    ids, merged, shrunk, new_children = _assign_ids(hood, records_of)
    child_of = {uid: ids[i] for i, uids in enumerate(records_of) for uid in uids}
    cluster_of_node = {node: i for i, cluster in enumerate(clusters) for node in cluster}
    changes = ChangeSet(merged=merged, new_children=new_children, shrunk=shrunk)
    survivors = set(merged.values())
    for i, cluster in enumerate(clusters):
        reason = AMBIGUOUS if not ambiguous.isdisjoint(cluster) else (
            REVIEW_BAND if _in_review_band(graph, cluster, cluster_of_node, ambiguous) else None
        )
        review = reason is not None
        child = ids[i]
        bridging = child in survivors
        is_new_child = child in new_children
        founder = records_of[i][0]
        for uid in records_of[i]:
            current = hood.records[uid]
            decision = _decision(current, child, review, bridging, is_new_child, uid == founder)
            if current.child_id == child and current.decision == decision:
                continue  # unchanged
            changes.placements.append(Placement(
                uid, child, decision, _probability(graph, uid, child_of),
                _candidates(graph, uid, child_of) if review else (), reason,
            ))
    return changes


def _assign_ids(
    hood: Neighbourhood, clusters: list[list[str]]
) -> tuple[list[str], dict[str, str], set[str], set[str]]:
    """Each cluster's child id (rule 5), the children merged away, those that shrank, the new."""
    counts: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    first: dict[str, tuple[str, int]] = {}
    for i, uids in enumerate(clusters):
        for uid in uids:
            record = hood.records[uid]
            child = record.child_id
            if child is None:
                continue
            counts[child][i] += 1
            if child not in first or record.order < first[child][0]:
                first[child] = (record.order, i)
    home: dict[int, list[str]] = defaultdict(list)
    for child, per_cluster in counts.items():
        best = max(per_cluster.items(), key=lambda kv: (kv[1], kv[0] == first[child][1]))
        home[best[0]].append(child)
    ids, merged, new_children = [], {}, set()
    taken: set[str] = set()  # the ids given so far (a set: a large batch has 10^5 clusters)
    for i, uids in enumerate(clusters):
        if i in home:
            claimants = sorted(home[i], key=lambda c: (-counts[c][i], first[c][0], c))
            ids.append(claimants[0])
            taken.add(claimants[0])
            merged |= {other: claimants[0] for other in claimants[1:]}
        else:
            founder = hood.records[uids[0]]
            seed = founder.unique_id
            if founder.child_id is not None:  # a part split off an existing child
                seed = f"{founder.unique_id}/{'|'.join(uids)}/{founder.child_id}"
            child = new_child_id(seed)
            while child in counts or child in taken:  # never another cluster's child's id
                seed += "/"
                child = new_child_id(seed)
            ids.append(child)
            taken.add(child)
            new_children.add(child)
    index_of = {child: i for i, child in enumerate(ids)}
    shrunk = {
        child for child, per_cluster in counts.items()
        if child in index_of and any(i != index_of[child] for i in per_cluster)
    }
    return ids, merged, shrunk, new_children


def _in_review_band(
    graph: _NodeGraph, cluster: set[str], cluster_of: dict[str, int], ambiguous: set[str]
) -> bool:
    """Rule 4: a lone node scoring in the review band against an earlier node elsewhere (not an
    ambiguous one: that one is queued already)."""
    if len(cluster) != 1:
        return False
    (node,) = cluster
    barred = graph.barred(node, cluster_of)
    return any(
        p >= graph.config.review_threshold and graph.order[other] < graph.order[node]
        and other not in ambiguous and cluster_of[other] not in barred
        and _pair(node, other) not in graph.apart
        for other, p in graph.neighbours[node].items()
        if cluster_of[other] != cluster_of[node]
    )


def _decision(
    record: Record, child_id: str, review: bool, bridging: bool, is_new_child: bool,
    founder: bool,
) -> str:
    if review:
        return "review"
    if record.child_id is None:
        if is_new_child:
            return "new" if founder else "link"
        return "bridge" if bridging else "link"
    if record.child_id == child_id:
        if record.decision not in (None, "review"):
            return record.decision
        return "new" if founder else "link"  # settled: by later evidence or a person
    return "new" if is_new_child and founder else "link"


def _probability(graph: _NodeGraph, uid: str, child_of: dict[str, str]) -> float | None:
    """The record's best pair within its child (else its best pair at all)."""
    pairs = graph.record_pairs.get(uid, [])
    child = child_of[uid]
    inside = [p for other, p in pairs if child_of[other] == child]
    if inside:
        return max(inside)
    return max((p for _, p in pairs), default=None)


def _candidates(
    graph: _NodeGraph, uid: str, child_of: dict[str, str]
) -> tuple[tuple[str, float], ...]:
    """The children a queued record's node scored against (best pair each), strongest first,
    but those a person said it is not."""
    node = graph.node_of[uid]
    excluded = {child_of[uid]} | {
        child_of[graph.members[other][0]] for other in graph.cannot_with.get(node, ())}
    best: dict[str, float] = {}
    for member in graph.members[node]:
        for other, p in graph.record_pairs.get(member, []):
            child = child_of[other]
            if child not in excluded and p > best.get(child, -1.0):
                best[child] = p
    return tuple(sorted(best.items(), key=lambda kv: (-kv[1], kv[0])))
