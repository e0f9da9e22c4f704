"""Golden-record survivorship: each batch's placed records are folded into their children's rows.

Two rules, chosen per field in `SurvivorshipConfig`:

- *trusted*: the value from the most trusted source (`source_trust`: GRO > NHS > census > DWP by
  default), the most recent event among equals — for identity fields (forename, sex, DOB, NHS no.);
- *latest*: the value of the most recent event, the more trusted source among equal times — for
  fields that really change (surname after a change of name, address, school, GP, contact).

Each rule is an order key per value (`trust || event_time`, or `event_time || trust`, then the
record's `unique_id` among equals); a child's golden value is its records' value with the greatest
key. Because the
greatest key of all records is the greatest of (the child's current winner, the records placed
now), a fold reads only the batch's placed records and those children's current rows, never a
child's whole history, and an update older than what a child holds can never overwrite newer
values, whatever order the feeds deliver in. Records moved into a child (a merge, a redo, a
person's link) fold in the same way; a child that lost records (a split, an unlink, a record found
ambiguous) is rebuilt from all the records it still holds, so an unlinked death no longer makes it
deceased.

Each field's provenance (the `feed:record_id` it came from, also its key's tie-break) is kept in
`children.provenance`, a JSON object with one member per golden field; its key's first part in
`children.survivorship_keys` (one text column each: DuckDB reads a few children's rows far faster
from one JSON column than from a struct of twenty members). The keys are stored compactly: a
JSON array of a map and then the child's distinct keys in ascending order, the map one character
per field in `GOLDEN_FIELDS` order, '0' for no key, else chr(48 + j) for the j-th key
(`encoded_keys`, `decoded_keys`; `["1120…","42009-01-01T00:00:00Z","2009-06-01T00:00:00Z4"]`).
A child's twenty keys are mostly the event times of a few records: ~100 bytes where an array of
twenty keys took ~400. A death record sets `status = 'deceased'`.

The fold is one SQL statement for a large batch (a bulk load); for up to a thousand records (a
following engine's batches, a person's act) the same picks are compared in Python, which spares
DuckDB planning that statement.
"""

from __future__ import annotations

import json
from collections import defaultdict

import duckdb
import pyarrow as pa

from engine.config import SurvivorshipConfig
from engine.master_store import GOLDEN_FIELDS, GOLDEN_FIELDS_JSON_SHAPE

# Statuses the records decide; any other (e.g. archived) is kept as it is.
DERIVED_STATUSES = ("active", "deceased")

# The shape of `survivorship_keys` when read back from JSON (`provenance`'s is
# GOLDEN_FIELDS_JSON_SHAPE), and the map's character of a field without a key.
_KEYS_SHAPE = '["VARCHAR"]'
_NO_KEY = "0"


class GoldenFold:
    """Folds every record of table `placed` (with at least `FOLDED_COLUMNS`) into
    its child's golden row, creating the rows of new children (statements built once).
    `rebuilt(child_id)`: children whose golden values come from `placed` alone (it holds all
    their records), not from their current row (None: there are none).

    The fold runs in DuckDB (`_fold_sql`) or, for at most `PYTHON_FOLD_RECORDS` records, in
    Python (`fold_few`), which gives the same rows without DuckDB planning ~450 expressions.

    Delete-and-insert rather than `ON CONFLICT DO UPDATE`: DuckDB's upsert of a few thousand
    wide rows costs seconds, the delete and insert milliseconds. What records do not decide
    (created_at, shielding, a status such as archived, any other column) is carried over from
    the child's previous row.
    """

    def __init__(self, config: SurvivorshipConfig, placed: str, rebuilt: str | None) -> None:
        self.config = config
        self.placed = placed
        fields = ", ".join(GOLDEN_FIELDS)
        not_rebuilt = f"WHERE child_id NOT IN (SELECT child_id FROM {rebuilt})" if rebuilt else ""
        candidates = f"""
            {_placed_candidates_sql(placed, config)}
            UNION ALL BY NAME
            {_current_candidates_sql(not_rebuilt)}
        """
        self._fold_sql = f"CREATE OR REPLACE TEMP TABLE golden AS {_fold_sql(candidates)}"
        self._placed_rows_sql = (f"SELECT child_id, unique_id, feed, event_time, event, "
                                 f"date_of_death, {fields} FROM {placed}")
        self._current_rows_sql = (f"SELECT child_id, provenance, survivorship_keys, status, "
                                  f"{fields} FROM previous_children {not_rebuilt}")
        self._write_sqls = [
            """
            DELETE FROM children WHERE row_no IN (
                SELECT row_no FROM previous_children
                WHERE child_id IN (SELECT child_id FROM golden))
            """,
            f"""
            INSERT INTO children BY NAME
            SELECT
                g.* EXCLUDE (status),
                p.* EXCLUDE (child_id, {fields}, provenance, survivorship_keys,
                             status, shielded, created_at, updated_at, row_no),
                CASE WHEN p.status IN ({", ".join(f"'{s}'" for s in DERIVED_STATUSES)})
                          OR p.status IS NULL
                     THEN g.status ELSE p.status END AS status,
                coalesce(p.shielded, false) AS shielded,
                coalesce(p.created_at, now()) AS created_at,
                now() AS updated_at
            FROM golden g LEFT JOIN previous_children p USING (child_id)
            """,
        ]

    def run(self, con: duckdb.DuckDBPyConnection, records: int, children: str = "children"
            ) -> None:
        """Fold the `records` records of `placed` (in the caller's transaction). `children`:
        where to read the current rows of their children from (`children`, or a part of it
        holding them all)."""
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE previous_children AS
            SELECT * FROM {children} WHERE child_id IN (SELECT child_id FROM {self.placed})
        """)
        if records > PYTHON_FOLD_RECORDS:
            con.execute(self._fold_sql)
        else:
            self._fold_in_python(con)
        for statement in self._write_sqls:
            con.execute(statement)

    def _fold_in_python(self, con: duckdb.DuckDBPyConnection) -> None:
        """Table `golden`, as `_fold_sql` makes it, from `fold_few`."""
        placed = con.execute(self._placed_rows_sql).fetchall()
        current = con.execute(self._current_rows_sql).fetchall()
        con.register("golden_arrow", fold_few(self.config, placed, current))
        con.execute("CREATE OR REPLACE TEMP TABLE golden AS SELECT * FROM golden_arrow")
        con.unregister("golden_arrow")


# The columns of a placed record that a fold reads: a record's other columns (its record id,
# source key, standardised forename) decide no golden field.
FOLDED_COLUMNS = ("child_id", "unique_id", "feed", "event_time", "event", *GOLDEN_FIELDS)


# Up to this many placed records are folded in Python (following, a quiet update or a busy
# second's few hundred; people's acts), more in DuckDB (bulk loads). Python takes ~35 us a record
# with its child's current row, read, folded and handed back (400 records 15 ms, 1,600 52 ms),
# DuckDB ~20 ms to plan the fold and little a record (400 records 26 ms, 1,600 44 ms), so
# DuckDB is cheaper from about a thousand on (2026-12-04, 1M children).
PYTHON_FOLD_RECORDS = 1000


def _order_keys(config: SurvivorshipConfig) -> dict[str, str]:
    """Per golden field, the SQL of its order key over a record `r` with its source's rank
    `r.trust` (`_placed_candidates_sql`)."""
    keys = {name: "r.trust || r.event_time" for name in config.trusted_fields}
    keys |= {name: "r.event_time || r.trust" for name in config.latest_fields}
    missing = set(GOLDEN_FIELDS) - set(keys)
    if missing:
        raise ValueError(f"survivorship has no rule for {sorted(missing)}")
    return keys


def _placed_candidates_sql(placed: str, config: SurvivorshipConfig) -> str:
    """The placed records, each field with its source record and order key (the source's rank
    computed once a record: each expression costs DuckDB time to plan, every batch)."""
    keys = _order_keys(config)
    trust_cases = " ".join(
        f"WHEN '{feed}' THEN {rank}" for feed, rank in sorted(config.source_trust.items())
    )
    columns = ", ".join(
        f"r.{name}, r.unique_id AS s_{name}, {keys[name]} AS k_{name}" for name in GOLDEN_FIELDS
    )
    # A rank is one character, chr(48 + rank): '0'..'9' for 0..9 as in keys already stored, and
    # past 9 characters that sort after '9', so rank 10 sorts above 9 (as text, "10" < "9").
    return f"""
        SELECT r.child_id, {columns},
               r.event = 'death' OR r.date_of_death IS NOT NULL AS died
        FROM (SELECT *, chr(48 + CASE feed {trust_cases} ELSE 0 END) AS trust FROM {placed}) r
    """


def _current_candidates_sql(not_rebuilt: str) -> str:
    """The current rows of those children (`previous_children`) not being rebuilt (the
    condition `not_rebuilt`)."""
    columns = ", ".join(
        f"c.{name}, c.p.{name} AS s_{name}, c.k[{i}] AS k_{name}"
        for i, name in enumerate(GOLDEN_FIELDS, start=1)
    )
    return f"""
        SELECT c.child_id, {columns}, c.status = 'deceased' AS died
        FROM (
            SELECT *, {decoded_keys_sql("stored_keys")} AS k
            FROM (SELECT *, from_json(provenance, '{GOLDEN_FIELDS_JSON_SHAPE}') AS p,
                         from_json(survivorship_keys, '{_KEYS_SHAPE}') AS stored_keys
                  FROM previous_children {not_rebuilt})
        ) c
    """


def _fold_sql(candidates: str) -> str:
    """Each child's greatest-key value per field, with its provenance and key, over the
    `candidates` query (not materialised first: writing its sixty text columns to a table cost
    as much as the fold itself, 1.1 s of 2.1 s for 60k records).

    A field's pick is the greatest of `key SEP source SEP value` as text (NULL where the value
    is): a key is one rank character and an event time of one width, and neither it nor the
    source (a printable `feed:record_id`) holds SEP, so the greatest text has the greatest key,
    then the greatest source, and the key and source are the pick's first two parts. A plain
    `max` over text costs a fifth of `arg_max` over a struct of the three (95k children: 0.45 s
    against 2.4 s). The pick is split once (`string_split`; `split_part` is
    four times dearer for DuckDB to plan, and this statement is planned every batch)."""
    picks = ",\n            ".join(
        f"max(k_{name} || {_SEP} || coalesce(s_{name}, '') || {_SEP} || {name}) AS {name}"
        for name in GOLDEN_FIELDS
    )
    parts = ", ".join(f"{name}, string_split({name}, {_SEP}) AS p_{name}"
                      for name in GOLDEN_FIELDS)
    values = ", ".join(
        f"substr({name}, length(p_{name}[1]) + length(p_{name}[2]) + 3) AS {name}"
        for name in GOLDEN_FIELDS
    )
    sources = ", ".join(f"'{name}': nullif(p_{name}[2], '')" for name in GOLDEN_FIELDS)
    order_keys = ", ".join(f"p_{name}[1]" for name in GOLDEN_FIELDS)
    return f"""
    SELECT
        child_id,
        {values},
        to_json({{{sources}}}) AS provenance,
        {encoded_keys_sql("key_list", "key_set")} AS survivorship_keys,
        CASE WHEN died THEN 'deceased' ELSE 'active' END AS status
    FROM (
        SELECT *, {key_set_sql("key_list")} AS key_set FROM (
            SELECT *, [{order_keys}] AS key_list FROM (
                SELECT child_id, {parts}, died FROM (
                    SELECT child_id, {picks}, bool_or(died) AS died
                    FROM ({candidates})
                    GROUP BY child_id
                )
            )
        )
    )
    """


# The statements below each take a list of the golden fields' keys in one column, not twenty
# expressions: with twenty CASEs instead of one lambda over a list, the golden statement of a
# batch of 500 took ~7 ms more (2026-12-03).

def key_set_sql(key_list: str) -> str:
    """SQL of the distinct non-NULL keys of the list column `key_list`, ascending (as
    `encoded_keys` sorts them: by code point, which orders as DuckDB's bytes do)."""
    return f"list_sort(list_distinct({key_list}))"


def encoded_keys_sql(key_list: str, key_set: str) -> str:
    """SQL of `survivorship_keys` (`encoded_keys`) for the list column `key_list` of each
    golden field's key and its `key_set_sql` in column `key_set`."""
    mark = f"coalesce(chr({ord(_NO_KEY)} + list_position({key_set}, key)), '{_NO_KEY}')"
    return (f"to_json(list_prepend(array_to_string(list_transform({key_list}, "
            f"lambda key: {mark}), ''), {key_set}))")


def decoded_keys_sql(stored_keys: str) -> str:
    """SQL of the list of each golden field's key (NULL: none) from the column `stored_keys`,
    `survivorship_keys` read as a JSON array of text."""
    return (f"list_transform(string_split({stored_keys}[1], ''), lambda mark: "
            f"CASE WHEN mark > '{_NO_KEY}' "
            f"THEN {stored_keys}[ascii(mark) - {ord(_NO_KEY) - 1}] END)")


def encoded_keys(keys: list[str | None]) -> str:
    """`survivorship_keys` for each golden field's key (None: none), as `encoded_keys_sql`
    writes it."""
    key_set = sorted(set(keys) - {None})
    marks = dict(zip(key_set, _MARKS, strict=False))
    key_map = "".join([marks.get(key, _NO_KEY) for key in keys])
    return "[" + ",".join(map(_json_text, [key_map, *key_set])) + "]"


def decoded_keys(text: str | None) -> list[str | None]:
    """Each golden field's key from `survivorship_keys` (None: none)."""
    if text is None:
        return [None] * len(GOLDEN_FIELDS)
    key_map, *key_set = json.loads(text)
    keys = dict(zip(_MARKS, key_set, strict=False))
    return [keys.get(mark) for mark in key_map]


# The map's character of a field's j-th key (j = 1, 2, ...; `_NO_KEY` for none).
_MARKS = [chr(ord(_NO_KEY) + j) for j in range(1, len(GOLDEN_FIELDS) + 1)]


# What separates a field pick's key, source and value in SQL (see _fold_sql).
_SEP = "chr(1)"


def fold_few(config: SurvivorshipConfig, placed: list[tuple], current: list[tuple]) -> pa.Table:
    """The golden rows `_fold_sql` makes, folded here for a few hundred records
    (`PYTHON_FOLD_RECORDS`): DuckDB plans the fold's ~450 expressions in ~20 ms, which is most
    of a small batch's write, while Python folds ten records in well under a millisecond.

    `placed`: `(child_id, unique_id, feed, event_time, event, date_of_death, *GOLDEN_FIELDS)`
    of each placed record; `current`: `(child_id, provenance, survivorship_keys, status,
    *GOLDEN_FIELDS)` of each of their children's rows not rebuilt. A pick is the tuple
    `(key, source, value)`, which orders as the SQL's text `key SEP source SEP value` does: SEP
    sorts before every character a key or a source holds, so a shorter part sorts first there
    as in a tuple (and Python compares strings by code point, DuckDB by UTF-8 byte, which order
    alike). Both give the same rows: tests/test_survivorship.py folds the same records both
    ways."""
    trusted = [name in config.trusted_fields for name in GOLDEN_FIELDS]
    ranks = {feed: chr(48 + rank) for feed, rank in config.source_trust.items()}
    picks: dict[str, list[tuple[str, str, str] | None]] = defaultdict(
        lambda: [None] * len(GOLDEN_FIELDS))
    died: dict[str, bool] = {}
    for child_id, unique_id, feed, event_time, event, date_of_death, *values in placed:
        died[child_id] = (died.get(child_id, False) or event == "death"
                          or date_of_death is not None)
        best = picks[child_id]
        if event_time is None:  # no key: the record decides no field (NULL || ... is NULL)
            continue
        rank = ranks.get(feed, "0")
        keys = (event_time + rank, rank + event_time)  # latest, trusted: `_order_keys`'
        for i, value in enumerate(values):
            if value is not None:
                pick = (keys[trusted[i]], unique_id, value)
                if best[i] is None or pick > best[i]:
                    best[i] = pick
    for child_id, provenance, order_keys, status, *values in current:
        died[child_id] = died.get(child_id, False) or status == "deceased"
        best = picks[child_id]
        sources = json.loads(provenance) if provenance is not None else {}
        keys = decoded_keys(order_keys)
        for i, (name, key, value) in enumerate(zip(GOLDEN_FIELDS, keys, values, strict=False)):
            if value is not None and key is not None:
                pick = (key, sources.get(name) or "", value)
                if best[i] is None or pick > best[i]:
                    best[i] = pick
    return _golden_table(picks, died)


def _golden_table(picks: dict[str, list[tuple[str, str, str] | None]],
                  died: dict[str, bool]) -> pa.Table:
    """The golden rows of `fold_few` as `_fold_sql` writes them (its JSON as DuckDB's
    `to_json` writes it: compact, non-ASCII as it is)."""
    values: list[list[str | None]] = [[] for _ in GOLDEN_FIELDS]
    provenance, order_keys, status = [], [], []
    for child_id, best in picks.items():
        for i, pick in enumerate(best):
            values[i].append(pick[2] if pick else None)
        provenance.append("{" + ",".join(
            f"{member}{_json_text(pick[1]) if pick and pick[1] else 'null'}"
            for member, pick in zip(_PROVENANCE_MEMBERS, best, strict=True)) + "}")
        order_keys.append(encoded_keys([pick[0] if pick else None for pick in best]))
        status.append("deceased" if died[child_id] else "active")
    columns = {"child_id": list(picks), **dict(zip(GOLDEN_FIELDS, values, strict=True)),
               "provenance": provenance, "survivorship_keys": order_keys, "status": status}
    return pa.table({name: pa.array(column, pa.string()) for name, column in columns.items()})


# `provenance`'s members as `to_json` writes them, each before its value.
_PROVENANCE_MEMBERS = [f'"{name}":' for name in GOLDEN_FIELDS]


# A string as JSON text as DuckDB's `to_json` writes it, non-ASCII as it is (`json.dumps`
# with `ensure_ascii=False` without its generic dispatch: the fold writes ~20 a child).
_json_text = json.encoder.encode_basestring

