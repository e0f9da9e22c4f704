"""The master store: one DuckDB file holding children, links, the record index and the queues.

Tables (DESIGN.md "Master store contract" plus our own):

- `children`      one row per child: golden fields, `provenance` (JSON: per field the
                  `feed:record_id` it came from), `survivorship_keys` (JSON array: a map of the
                  fields and the child's distinct order keys, engine.survivorship), `status`
                  (`active`, `deceased`, `merged`), `merged_into`, `shielded`, timestamps,
                  `row_no` (new each time the row is written: engine.record_locator finds a
                  child's row by it);
- `links`         the current decision for every processed good feed record, with its record's
                  `record_no` (a move finds its row by number, not by reading every key);
- `records`       the record index: every linked record in canonical form with its `child_id`
                  and a `record_no` (candidates are searched here, not only in golden records);
- `blocking_keys` `(block_key, record_no)`: the blocking index over `records` (engine.candidates);
- `xref`          `(feed, source_key) -> child_id`, the fast path for known identifiers, and an
                  `xref_no` (engine.record_locator finds a key's row by it);
- `term_frequencies` `(column_name, value, n)`: counts behind the model's tf adjustments;
- `dead_letters`  one row per bad line, with its reason;
- `scored_pairs`  `(uid_a, uid_b, probability, pair_no)`: every scored pair of records at or above
                  the review threshold (the graph the decision core re-resolves; kept because
                  re-scoring a neighbourhood every batch would cost more than reading it), numbered
                  in the order stored (engine.record_locator finds a record's pairs by number);
- `constraints`   people's decisions: `must`/`cannot` link between two records, by whom, why,
                  numbered in the order made (`constraint_no`: engine.record_locator finds a
                  record's constraints by number);
- `decision_history` append-only: every decision a record got, with its evidence (probability,
                  candidates, model version) and who made it (engine, redo, user:NAME);
- `review_queue`  records a person must look at (ambiguous, review band), with candidates; an item
                  stays (resolved_at, resolution, resolved_by) when settled;
- `merges`        children merged into another (by a batch, a redo or a person);
- `batches`       one row per committed micro-batch: sizes, outcome counts, start and commit
                  time (`links.batch_id` says which batch decided a record: latency is measured
                  from a line's append to its batch's `committed_at`), milliseconds per resolver
                  stage but the commit (`stage_ms`, engine.stage_clock: cost against master size);
- `sources`       the accredited feeds (the engine reads only registered feeds' lines);
- `master_meta`   `(key, value)`: the schema version, what the blocking index was built for.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

from engine.config import StoreConfig
from engine.feed_positions import create_feed_positions_table
from streams.canonical import FEEDS, UPDATE_COLUMNS

GOLDEN_FIELDS: tuple[str, ...] = (
    "first_name", "middle_names", "surname", "preferred_first_name", "preferred_surname",
    "former_surname", "sex", "date_of_birth", "date_of_death", "address_line1", "address_line2",
    "town", "postcode", "nhs_number", "upn", "parent_forenames", "parent_surname",
    "claimant_nino", "school_urn", "gp_practice_code",
)


# A JSON object with one text member per golden field (`children.provenance`), as DuckDB's
# `from_json` reads it.
GOLDEN_FIELDS_JSON_SHAPE = "{" + ", ".join(f'"{name}": "VARCHAR"' for name in GOLDEN_FIELDS) + "}"

SOURCES_SEEDED_BY = "DfE (sources frozen June 2010)"

# Bumped whenever a table changes shape; a master of another version is refused, not guessed at,
# unless a migration below takes it to this version.
SCHEMA_VERSION = "12"


class MasterStoreError(RuntimeError):
    """The master file cannot be opened or written (locked, unreadable, disk full, or written by
    an engine with another schema version)."""


# The text columns of `children`, stored uncompressed: a batch reads a few children's whole rows
# by number, and DuckDB decompresses a whole dictionary-compressed block for each (a child's row
# at 1M children: 16.6 ms compressed, 4.6 ms not; 1,000 rows: 300 ms against 166 ms), for ~9%
# more disk. `survivorship_keys` too (`_CHILD_KEYS`): 400 rows at 1M children, 55 -> 34 ms, once
# its keys are held compactly (~100 bytes a child; as an array of twenty keys, ~400 bytes, it
# crowded DuckDB's cache). `provenance` stays compressed: ~600 bytes a child uncompressed.
# Likewise the text a batch reads from scattered rows of the record index and the stored pairs:
# `records.child_id` (the candidates' children, every record of a touched child: for 2,200
# scattered records at 1M children 9.3 -> 2.6 ms over the scan of `record_no`) and
# `scored_pairs`' two record ids (a neighbourhood's pairs, 9.3 -> 3.3 ms a batch of 400), for
# ~80 and ~60 MB more disk at 1M children. The records' other columns stay compressed: each
# costs a batch ~1 ms compressed, and uncompressed they would crowd DuckDB's cache.
_UNCOMPRESSED_TEXT = "VARCHAR USING COMPRESSION uncompressed"
_CHILD_KEYS = "JSON USING COMPRESSION uncompressed"

# `records` by number: a batch reads a few of its 7.7M rows (1M children) by `record_no`, the
# records of a child that lost one, the moved ones, a neighbourhood's, and a scan reads each
# wanted row's whole vector of every column it wants (ten records' folded columns 12.5 ms, a
# hundred 76 ms; through the index 3.6 and 15 ms: engine.record_locator). A plain index on a
# number (not a key of text, as the schema's first comment is about): ~60 MiB of DuckDB's
# memory at 1M children, 2.6 s to build there, and a checkpoint after a batch's inserts takes
# ~2 ms more, not the whole index again (DuckDB 2.0.1, 2026-12-05). Made after the migrations
# (DuckDB cannot rename or alter a table an index depends on: a migration that copies
# `records` must drop it first), so a master of this version made before it gains it when next
# opened for writing.
_INDEXES_SQL = "CREATE INDEX IF NOT EXISTS records_by_number ON records (record_no)"


def _schema_sql() -> str:
    record_columns = ",\n    ".join(f"{name} VARCHAR" for name in UPDATE_COLUMNS)
    golden_columns = ",\n    ".join(f"{name} {_UNCOMPRESSED_TEXT}" for name in GOLDEN_FIELDS)
    return f"""
-- No primary key (ART index) on the tables that grow with the master: children, links, records,
-- blocking_keys, xref (records' plain index on its number: `_INDEXES_SQL`). DuckDB writes a
-- table's whole ART index over text keys at every checkpoint, so a commit
-- would cost time in proportion to the master's size (with links' and xref's keys at 7.7M records,
-- 1.7-4.3 s a commit instead of 0.1-0.5 s). The resolver keeps the keys unique instead: a batch
-- takes only records not yet in links, xref gains only keys the batch did not find in it, and the
-- golden fold replaces a child's row.
CREATE SEQUENCE IF NOT EXISTS child_row_seq;
CREATE TABLE IF NOT EXISTS children (
    child_id {_UNCOMPRESSED_TEXT} NOT NULL,
    {golden_columns},
    provenance JSON,
    survivorship_keys {_CHILD_KEYS},
    status {_UNCOMPRESSED_TEXT} NOT NULL DEFAULT 'active',
    merged_into {_UNCOMPRESSED_TEXT},
    shielded BOOLEAN NOT NULL DEFAULT false,
    shielded_by {_UNCOMPRESSED_TEXT},
    shielded_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    row_no BIGINT DEFAULT nextval('child_row_seq')
);
CREATE TABLE IF NOT EXISTS links (
    feed VARCHAR NOT NULL,
    record_id VARCHAR NOT NULL,
    child_id VARCHAR NOT NULL,
    decision VARCHAR NOT NULL,
    match_probability DOUBLE,
    model_version VARCHAR,
    decided_at TIMESTAMPTZ NOT NULL,
    batch_id BIGINT,
    record_no BIGINT
);
CREATE TABLE IF NOT EXISTS records (
    record_no BIGINT NOT NULL,
    unique_id VARCHAR NOT NULL,
    child_id {_UNCOMPRESSED_TEXT} NOT NULL,
    {record_columns}
);
CREATE SEQUENCE IF NOT EXISTS record_no_seq;
CREATE TABLE IF NOT EXISTS blocking_keys (
    block_key UBIGINT NOT NULL,
    record_no BIGINT NOT NULL
);
CREATE SEQUENCE IF NOT EXISTS xref_no_seq;
CREATE TABLE IF NOT EXISTS xref (
    feed VARCHAR NOT NULL,
    source_key VARCHAR NOT NULL,
    child_id VARCHAR NOT NULL,
    xref_no BIGINT DEFAULT nextval('xref_no_seq')
);
CREATE TABLE IF NOT EXISTS term_frequencies (
    column_name VARCHAR NOT NULL,
    value VARCHAR NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (column_name, value)
);
CREATE TABLE IF NOT EXISTS dead_letters (
    feed VARCHAR NOT NULL,
    file VARCHAR NOT NULL,
    line BIGINT NOT NULL,
    raw VARCHAR,
    error VARCHAR NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (file, line)
);
CREATE SEQUENCE IF NOT EXISTS review_item_seq;
CREATE TABLE IF NOT EXISTS review_queue (
    item_id BIGINT NOT NULL DEFAULT nextval('review_item_seq'),
    feed VARCHAR NOT NULL,
    record_id VARCHAR NOT NULL,
    reason VARCHAR NOT NULL,
    child_id VARCHAR NOT NULL,
    candidates JSON,
    queued_at TIMESTAMPTZ NOT NULL,
    resolved_at TIMESTAMPTZ,
    resolution VARCHAR,
    resolved_by VARCHAR,
    PRIMARY KEY (feed, record_id)
);
CREATE SEQUENCE IF NOT EXISTS pair_no_seq;
CREATE TABLE IF NOT EXISTS scored_pairs (
    uid_a {_UNCOMPRESSED_TEXT} NOT NULL,
    uid_b {_UNCOMPRESSED_TEXT} NOT NULL,
    probability DOUBLE NOT NULL,
    pair_no BIGINT DEFAULT nextval('pair_no_seq')
);
CREATE SEQUENCE IF NOT EXISTS constraint_no_seq;
CREATE TABLE IF NOT EXISTS constraints (
    kind VARCHAR NOT NULL CHECK (kind IN ('must', 'cannot')),
    uid_a VARCHAR NOT NULL,
    uid_b VARCHAR NOT NULL,
    decided_by VARCHAR NOT NULL,
    reason VARCHAR,
    decided_at TIMESTAMPTZ NOT NULL,
    constraint_no BIGINT DEFAULT nextval('constraint_no_seq'),
    PRIMARY KEY (uid_a, uid_b)
);
CREATE SEQUENCE IF NOT EXISTS decision_seq;
CREATE TABLE IF NOT EXISTS decision_history (
    seq BIGINT NOT NULL DEFAULT nextval('decision_seq'),
    feed VARCHAR NOT NULL,
    record_id VARCHAR NOT NULL,
    child_id VARCHAR NOT NULL,
    decision VARCHAR NOT NULL,
    match_probability DOUBLE,
    candidates JSON,
    model_version VARCHAR,
    decided_by VARCHAR NOT NULL,
    batch_id BIGINT,
    decided_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    batch_id BIGINT PRIMARY KEY,
    started_at TIMESTAMPTZ NOT NULL,
    committed_at TIMESTAMPTZ NOT NULL,
    items BIGINT NOT NULL,
    updates BIGINT NOT NULL,
    new_children BIGINT NOT NULL,
    review BIGINT NOT NULL,
    dead_letters BIGINT NOT NULL,
    stage_ms JSON
);
CREATE TABLE IF NOT EXISTS merges (
    merged_child_id VARCHAR PRIMARY KEY,
    into_child_id VARCHAR NOT NULL,
    decided_by VARCHAR NOT NULL,
    batch_id BIGINT,
    merged_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS sources (
    feed VARCHAR PRIMARY KEY,
    registered_by VARCHAR NOT NULL,
    registered_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS master_meta (
    key VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL
);
"""


# How long the engine waits for a master another process holds for a moment (a person's act
# performed on the file while no engine served it) before it gives up.
ENGINE_OPEN_WAIT_S = 3.0


def open_master(
    path: Path, *, read_only: bool = False, wait_s: float = 0.0
) -> duckdb.DuckDBPyConnection:
    """Open (creating if needed) the master DuckDB file with its schema, waiting up to `wait_s`
    seconds while another process holds it.

    Raises MasterStoreError with a one-line reason when the file is locked by another process,
    is not a DuckDB database, or cannot be created.
    """
    if read_only and not path.exists():
        raise MasterStoreError(f"master database {path} does not exist")
    deadline = time.monotonic() + wait_s
    try:
        if not read_only:
            path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            try:
                con = duckdb.connect(str(path), read_only=read_only)
                break
            except duckdb.IOException as err:
                if "lock" not in str(err).lower() or time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)
    except duckdb.IOException as err:
        reason = str(err).splitlines()[0]
        if "lock" in reason.lower():
            reason = f"master database {path} is in use by another process (only one writer)"
        raise MasterStoreError(reason) from err
    except (duckdb.Error, OSError) as err:
        raise MasterStoreError(f"cannot open master database {path}: {err}") from err
    if not read_only:
        try:
            if _create_or_check_schema(con, path):
                # opened again: the process that copied a table in a migration reads a few of
                # its rows slowly (400 children's rows at 1M: 110 ms, against 30 ms once opened
                # again, 2026-12-03)
                con.close()
                con = duckdb.connect(str(path))
        except MasterStoreError:
            con.close()
            raise
        create_feed_positions_table(con)
    return con


def _create_or_check_schema(con: duckdb.DuckDBPyConnection, path: Path) -> bool:
    """Create the tables of a new master; refuse a master written with another schema. Whether
    it migrated the master."""
    tables = {row[0] for row in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()"
    ).fetchall()}
    migrated = False
    if "children" in tables:
        version = "1"
        if "master_meta" in tables:
            rows = con.execute(
                "SELECT value FROM master_meta WHERE key = 'schema_version'"
            ).fetchall()
            version = rows[0][0] if rows else "1"
        migrated = version in _MIGRATIONS
        while version in _MIGRATIONS:  # each takes the master one version on
            _MIGRATIONS[version](con)
            version = str(int(version) + 1)
        if version != SCHEMA_VERSION:
            raise MasterStoreError(
                f"master database {path} has schema version {version}, this engine writes "
                f"version {SCHEMA_VERSION}: load the feeds into a new master file"
            )
    con.execute(_schema_sql())
    con.execute(_INDEXES_SQL)
    con.execute(
        "INSERT OR IGNORE INTO master_meta VALUES ('schema_version', ?)", [SCHEMA_VERSION]
    )
    con.executemany(
        "INSERT INTO sources VALUES (?, ?, now()) ON CONFLICT DO NOTHING",
        [[feed, SOURCES_SEEDED_BY] for feed in FEEDS],
    )
    return migrated


def _migrate_3_to_4(con: duckdb.DuckDBPyConnection) -> None:
    """Version 4 drops the primary keys of links and xref (see the schema's first comment): the
    tables are copied into keyless ones, in one transaction; batches gain `stage_ms`."""
    con.execute("BEGIN")
    for table in ("links", "xref"):
        con.execute(f"ALTER TABLE {table} RENAME TO {table}_v3")
    con.execute(_schema_sql())
    for table in ("links", "xref"):
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {table}_v3")
        con.execute(f"DROP TABLE {table}_v3")
    con.execute("ALTER TABLE batches ADD COLUMN stage_ms JSON")
    con.execute("UPDATE master_meta SET value = '4' WHERE key = 'schema_version'")
    con.execute("COMMIT")


def _migrate_4_to_5(con: duckdb.DuckDBPyConnection) -> None:
    """Version 5 numbers the stored pairs in the order they were stored (`scored_pairs.pair_no`)
    and the rows of `children` in the order written (`row_no`, new at every upsert), so that a
    batch finds a record's pairs and a child's row by key (engine.record_locator)."""
    con.execute("BEGIN")
    for table, column, sequence in (("scored_pairs", "pair_no", "pair_no_seq"),
                                    ("children", "row_no", "child_row_seq")):
        con.execute(f"CREATE SEQUENCE IF NOT EXISTS {sequence}")
        con.execute(f"ALTER TABLE {table} ADD COLUMN {column} BIGINT "
                    f"DEFAULT nextval('{sequence}')")
    con.execute("UPDATE master_meta SET value = '5' WHERE key = 'schema_version'")
    con.execute("COMMIT")


def _migrate_5_to_6(con: duckdb.DuckDBPyConnection) -> None:
    """Version 6 numbers the rows of `xref` (`xref_no`), so that a batch finds its keys' rows
    by key (engine.record_locator) instead of reading the whole table. (A master migrated from
    version 3 has the column already: version 4's tables were created with it.)"""
    con.execute("BEGIN")
    con.execute("CREATE SEQUENCE IF NOT EXISTS xref_no_seq")
    con.execute("ALTER TABLE xref ADD COLUMN IF NOT EXISTS xref_no BIGINT "
                "DEFAULT nextval('xref_no_seq')")
    con.execute("UPDATE master_meta SET value = '6' WHERE key = 'schema_version'")
    con.execute("COMMIT")


def _migrate_6_to_7(con: duckdb.DuckDBPyConnection) -> None:
    """Version 7 gives each `links` row its record's `record_no`, so that moving a record
    updates its link row found by number (engine.resolution.changes) instead of joining every
    row's `(feed, record_id)`: 40 moves on a 1M-children master, 82 ms -> 18 ms. (A master
    migrated from version 3 has the column already, empty: version 4's tables have it.)"""
    con.execute("BEGIN")
    con.execute("ALTER TABLE links ADD COLUMN IF NOT EXISTS record_no BIGINT")
    con.execute("""
        UPDATE links SET record_no = r.record_no FROM records r
        WHERE r.unique_id = links.feed || ':' || links.record_id
    """)
    con.execute("UPDATE master_meta SET value = '7' WHERE key = 'schema_version'")
    con.execute("COMMIT")


def _migrate_7_to_8(con: duckdb.DuckDBPyConnection) -> None:
    """Version 8 keeps `children.survivorship_keys` as a JSON array in `GOLDEN_FIELDS` order,
    each key without the source that ended it (the field's provenance, its tie-break): a third
    of a child's row less to read, log and checkpoint at every change (engine.survivorship)."""
    keys = ", ".join(
        f"CASE WHEN ends_with(k.{name}, p.{name}) "
        f"THEN left(k.{name}, length(k.{name}) - length(p.{name})) ELSE k.{name} END"
        for name in GOLDEN_FIELDS
    )
    con.execute("BEGIN")
    con.execute(f"""
        UPDATE children SET survivorship_keys = n.keys
        FROM (SELECT row_no, to_json([{keys}]) AS keys
              FROM (SELECT row_no, from_json(provenance, '{GOLDEN_FIELDS_JSON_SHAPE}') AS p,
                           from_json(survivorship_keys, '{GOLDEN_FIELDS_JSON_SHAPE}') AS k
                    FROM children)) n
        WHERE children.row_no = n.row_no
    """)
    con.execute("UPDATE master_meta SET value = '8' WHERE key = 'schema_version'")
    con.execute("COMMIT")


def _migrate_8_to_9(con: duckdb.DuckDBPyConnection) -> None:
    """Version 9 stores the text columns of `children` uncompressed (`_UNCOMPRESSED_TEXT`): ~15 s at
    1M children."""
    con.execute("BEGIN")
    _copy_table(con, "children", "children_v8",
                lambda ddl: re.sub(r"\bVARCHAR\b(?! USING)", _UNCOMPRESSED_TEXT, ddl),
                "SELECT * FROM children_v8")
    con.execute("UPDATE master_meta SET value = '9' WHERE key = 'schema_version'")
    con.execute("COMMIT")


def _migrate_9_to_10(con: duckdb.DuckDBPyConnection) -> None:
    """Version 10 holds `children.survivorship_keys` compactly (a map of the fields and the
    child's distinct keys, engine.survivorship), stored uncompressed (`_CHILD_KEYS`), the keys
    re-encoded on the way: ~10 s at 1M children."""
    # imported here: engine.survivorship reads this module's GOLDEN_FIELDS
    from engine.survivorship import encoded_keys_sql, key_set_sql

    con.execute("BEGIN")
    _copy_table(
        con, "children", "children_v9",
        lambda ddl: re.sub(r"\bsurvivorship_keys JSON\b(?! USING)",
                           f"survivorship_keys {_CHILD_KEYS}", ddl),
        f"""
        SELECT * EXCLUDE (key_list, key_set) REPLACE (
            CASE WHEN survivorship_keys IS NOT NULL
                 THEN {encoded_keys_sql("key_list", "key_set")} END AS survivorship_keys)
        FROM (SELECT *, {key_set_sql("key_list")} AS key_set
              FROM (SELECT *, from_json(survivorship_keys, '["VARCHAR"]') AS key_list
                    FROM children_v9))
        """)
    con.execute("UPDATE master_meta SET value = '10' WHERE key = 'schema_version'")
    con.execute("COMMIT")


def _migrate_10_to_11(con: duckdb.DuckDBPyConnection) -> None:
    """Version 11 stores `records.child_id` and `scored_pairs`' record ids uncompressed
    (`_UNCOMPRESSED_TEXT`): both tables are copied, ~20 s at 1M children."""
    con.execute("BEGIN")
    for table, columns in (("records", ("child_id",)), ("scored_pairs", ("uid_a", "uid_b"))):
        _copy_table(con, table, f"{table}_v10",
                    lambda ddl, columns=columns: _uncompressed(ddl, columns),
                    f"SELECT * FROM {table}_v10")
    con.execute("UPDATE master_meta SET value = '11' WHERE key = 'schema_version'")
    con.execute("COMMIT")


def _migrate_11_to_12(con: duckdb.DuckDBPyConnection) -> None:
    """Version 12 numbers people's constraints in the order made (`constraints.constraint_no`),
    so that a batch finds a record's constraints by key instead of reading them all."""
    con.execute("BEGIN")
    con.execute("CREATE SEQUENCE IF NOT EXISTS constraint_no_seq")
    con.execute("ALTER TABLE constraints ADD COLUMN constraint_no BIGINT "
                "DEFAULT nextval('constraint_no_seq')")
    con.execute("UPDATE master_meta SET value = '12' WHERE key = 'schema_version'")
    con.execute("COMMIT")


def _uncompressed(ddl: str, columns: tuple[str, ...]) -> str:
    """`ddl` with the text `columns` declared `_UNCOMPRESSED_TEXT`."""
    for column in columns:
        ddl = re.sub(rf"\b{column} VARCHAR\b(?! USING)", f"{column} {_UNCOMPRESSED_TEXT}", ddl)
    return ddl


def _copy_table(con: duckdb.DuckDBPyConnection, table: str, renamed: str,
                redeclared: Callable[[str], str], rows: str) -> None:
    """Copy `table`, renamed `renamed`, into a new `table` declared as `redeclared` of its
    DDL, with every column it has (the governance layer adds its own), from the query `rows`
    (in the caller's transaction; rows keep their order, which DuckDB preserves). Its indexes
    are dropped first (DuckDB cannot rename an indexed table); `_INDEXES_SQL` makes them again
    after the migrations."""
    for (index,) in con.execute(
        "SELECT index_name FROM duckdb_indexes() WHERE table_name = ? "
        "AND schema_name = 'main' AND database_name = current_database()", [table]
    ).fetchall():
        con.execute(f"DROP INDEX {index}")
    ddl = con.execute(
        "SELECT sql FROM duckdb_tables() WHERE table_name = ? "
        "AND schema_name = 'main' AND database_name = current_database()", [table]
    ).fetchall()[0][0]
    con.execute(f"ALTER TABLE {table} RENAME TO {renamed}")
    con.execute(redeclared(ddl))
    con.execute(f"INSERT INTO {table} BY NAME {rows}")
    con.execute(f"DROP TABLE {renamed}")


# From each version the function that migrates a master of that version to the next one.
_MIGRATIONS = {"3": _migrate_3_to_4, "4": _migrate_4_to_5, "5": _migrate_5_to_6,
               "6": _migrate_6_to_7, "7": _migrate_7_to_8, "8": _migrate_8_to_9,
               "9": _migrate_9_to_10, "10": _migrate_10_to_11,
               "11": _migrate_11_to_12}


def configure_store(con: duckdb.DuckDBPyConnection, config: StoreConfig,
                    following: bool = False) -> None:
    """Checkpoint after every `config.checkpoint_threshold_mb` of write-ahead log; DuckDB's
    memory held to `config.memory_limit_mb`. `following`: held to
    `config.following_memory_limit_mb` instead, plan small statements without
    `FOLLOWING_DISABLED_OPTIMIZERS`, and checkpoint without compacting (`end_following`)."""
    memory_limit_mb = config.following_memory_limit_mb if following else config.memory_limit_mb
    con.execute(f"SET checkpoint_threshold = '{config.checkpoint_threshold_mb}MB'")
    con.execute(f"SET memory_limit = '{memory_limit_mb}MB'")
    if following:
        con.execute(f"SET disabled_optimizers = '{','.join(FOLLOWING_DISABLED_OPTIMIZERS)}'")
        # A checkpoint's vacuum rewrites row groups that hold deleted rows (every batch
        # deletes and rewrites its children's rows) into new ones, and until the process
        # opens the master again DuckDB 2.0.1 reads those far slower: 150 scattered children's
        # rows of a rewritten row group 3.4-5.0 -> 19.4-27.0 ms, a following batch of 300 at 1M
        # children ~10% dearer after each checkpoint, and the checkpoint itself 2.4 s against
        # 0.6 s (docs/scale.md, "Small hours, 2026-12-05"). So a following engine's
        # checkpoints keep deleted rows as DuckDB's tombstones, and compacting waits for its
        # stop (`end_following`) or for a run that does not follow.
        con.execute("SET max_vacuum_tasks = 0")


def end_following(con: duckdb.DuckDBPyConnection, config: StoreConfig) -> None:
    """Before a following engine closes the master: DuckDB's vacuum back on, so that the
    checkpoint at close compacts the row groups following left deleted rows in (DuckDB does so
    for a table the log changed; with nothing logged since the last checkpoint, at a later
    one), within a load's memory limit: DuckDB then evicts cached blocks for the rows it
    rewrites, where on top of a following engine's full cache the compaction took a 1M
    engine's RSS from 2,815 to 2,952 MiB, above anything it reached following (with it,
    2,806 -> 2,643 MiB; docs/scale.md, "Midmorning, 2026-12-05")."""
    con.execute("RESET max_vacuum_tasks")
    con.execute(f"SET memory_limit = '{config.memory_limit_mb}MB'")


# DuckDB optimizers a following engine's batches do without. Such a batch runs ~85 statements
# over a few hundred rows each, and DuckDB spends ~25 ms a batch optimizing them: the join
# order search 5 ms, common subplans 2.7 ms, statistics propagation 2.1 ms (1M children, batches
# of 270 of the follow session's lines). Over so few rows a join order as written, with the
# build side still chosen by size (`build_side_probe_side`), costs no more to run. A bulk
# load's joins of 100,000-record batches keep them all. The setting is DuckDB's, not the
# connection's: a search served by the same process plans without them too.
FOLLOWING_DISABLED_OPTIMIZERS = ("join_order", "common_subplan", "statistics_propagation")


def registered_feeds(con: duckdb.DuckDBPyConnection) -> tuple[str, ...]:
    """The registered feed names, sorted (the feed reader dead-letters every other folder)."""
    return tuple(row[0] for row in con.execute("SELECT feed FROM sources ORDER BY feed").fetchall())


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> object:
    """The single value a query returns (fetched to the end: DuckDB 2 refuses further work on a
    connection while a result is unfinished)."""
    return con.execute(sql, params or []).fetchall()[0][0]
