"""Operational faults give one clear line on stderr, exit status 2, and no damage (issue 6)."""

import resource
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from engine.cli import main
from engine.master_store import GOLDEN_FIELDS, GOLDEN_FIELDS_JSON_SHAPE, SCHEMA_VERSION
from engine.survivorship import decoded_keys_sql
from streams.generator import generate


@pytest.fixture(scope="module")
def feeds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("faults")
    generate(800, 5, out)
    return out / "feeds"


def run_cli(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().err.strip()


def test_master_locked_by_another_process(feeds: Path, tmp_path: Path, capsys):
    db = tmp_path / "master.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         f"import duckdb, time; c = duckdb.connect({str(db)!r}); print('ready', flush=True); "
         "time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        code, err = run_cli(["run", "--feeds", str(feeds), "--db", str(db)], capsys)
    finally:
        holder.kill()
        holder.wait()
    assert code == 2
    assert err.splitlines()[-1] == (
        f"contactpoint run: master database {db} is in use by another process (only one writer)")


def test_a_master_in_a_folder_other_users_can_write_is_refused(feeds: Path, tmp_path: Path,
                                                                 capsys):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # another user could take the name of the service's socket here
    code, err = run_cli(["run", "--feeds", str(feeds), "--db", str(shared / "m.duckdb")], capsys)
    assert code == 2
    assert err.splitlines()[-1] == (
        f"contactpoint run: the master's folder {shared} can be written by other users, who "
        "could take the name of its service socket: keep the master in a folder only you can "
        "write (chmod go-w)")
    assert list(shared.iterdir()) == []


def test_master_of_an_earlier_schema_is_refused_untouched(feeds: Path, tmp_path: Path, capsys):
    db = tmp_path / "master.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE children (child_id VARCHAR PRIMARY KEY, provenance STRUCT(a INT))")
    con.close()
    code, err = run_cli(["run", "--feeds", str(feeds), "--db", str(db)], capsys)
    assert code == 2
    assert err.splitlines()[-1] == (
        f"contactpoint run: master database {db} has schema version 1, this engine writes "
        f"version {SCHEMA_VERSION}: load the feeds into a new master file")
    assert _query(db, "SELECT table_name FROM duckdb_tables()") == [("children",)]


def test_a_version_3_master_is_migrated_keeping_its_rows_without_keyed_indexes(
    feeds: Path, tmp_path: Path, capsys
):
    """Version 4 drops links' and xref's primary keys (an ART index is rewritten whole at every
    checkpoint), version 5 numbers the stored pairs, version 7 gives each link its record's
    number; a version 3 master is taken there in place, its rows kept."""
    db = tmp_path / "master.duckdb"
    assert run_cli(["run", "--feeds", str(feeds), "--db", str(db)], capsys)[0] == 0
    before = {t: _query(db, f"SELECT * FROM {t} ORDER BY ALL") for t in ("links", "xref")}
    con = duckdb.connect(str(db))  # as version 3 was: keyed links and xref, no stage_ms
    _constraints_as_version_11_had_them(con)
    con.execute("ALTER TABLE links DROP COLUMN record_no")
    for table, key in (("links", "feed, record_id"), ("xref", "feed, source_key")):
        con.execute(f"CREATE TABLE {table}_keyed AS SELECT * FROM {table} LIMIT 0")
        con.execute(f"ALTER TABLE {table}_keyed ADD PRIMARY KEY ({key})")
        con.execute(f"INSERT INTO {table}_keyed SELECT * FROM {table}")
        con.execute(f"DROP TABLE {table}")
        con.execute(f"ALTER TABLE {table}_keyed RENAME TO {table}")
    con.execute("ALTER TABLE batches DROP COLUMN stage_ms")
    for table, column, sequence in (("scored_pairs", "pair_no", "pair_no_seq"),
                                    ("children", "row_no", "child_row_seq")):
        con.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        con.execute(f"DROP SEQUENCE {sequence}")
    con.execute("UPDATE master_meta SET value = '3' WHERE key = 'schema_version'")
    con.close()
    assert run_cli(["run", "--feeds", str(feeds), "--db", str(db)], capsys)[0] == 0
    assert {t: _query(db, f"SELECT * FROM {t} ORDER BY ALL") for t in before} == before
    assert _query(db, "SELECT value FROM master_meta WHERE key = 'schema_version'") == [
        (SCHEMA_VERSION,)]
    for table, column in (("scored_pairs", "pair_no"), ("children", "row_no")):
        assert _query(db, f"SELECT count(*) = count(DISTINCT {column}) AND count(*) > 0 "
                          f"FROM {table}") == [(True,)]
    assert _query(db, "SELECT count(*) FROM duckdb_indexes() WHERE table_name IN "
                      "('links', 'xref')") == [(0,)]
    assert _query(db, "SELECT count(*) FROM duckdb_constraints() WHERE table_name IN "
                      "('links', 'xref') AND constraint_type = 'PRIMARY KEY'") == [(0,)]


def test_a_version_7_master_keeps_its_golden_order_keys_without_their_sources(
    feeds: Path, tmp_path: Path, capsys
):
    """Version 8 stores each child's order keys as a JSON array without the source that ended
    each one (its provenance): a version 7 master's keys are cut in place, to the very keys
    this engine writes."""
    db = tmp_path / "master.duckdb"
    assert run_cli(["run", "--feeds", str(feeds), "--db", str(db)], capsys)[0] == 0
    keys = "SELECT child_id, survivorship_keys FROM children ORDER BY child_id"
    before = _query(db, keys)
    with_sources = ", ".join(f"'{name}': k[{i}] || p.{name}"
                             for i, name in enumerate(GOLDEN_FIELDS, start=1))
    con = duckdb.connect(str(db))  # as version 7 wrote them: an object of whole keys
    _constraints_as_version_11_had_them(con)
    _keys_as_version_9_wrote_them(con)
    con.execute(f"""
        UPDATE children SET survivorship_keys = to_json({{{with_sources}}})
        FROM (SELECT row_no AS n, from_json(provenance, '{GOLDEN_FIELDS_JSON_SHAPE}') AS p,
                     from_json(survivorship_keys, '["VARCHAR"]') AS k FROM children)
        WHERE row_no = n
    """)
    con.execute("UPDATE master_meta SET value = '7' WHERE key = 'schema_version'")
    assert con.execute(keys).fetchall() != before
    con.close()
    assert run_cli(["run", "--feeds", str(feeds), "--db", str(db)], capsys)[0] == 0
    assert _query(db, keys) == before
    assert _query(db, "SELECT value FROM master_meta WHERE key = 'schema_version'") == [
        (SCHEMA_VERSION,)]


def test_a_version_8_master_keeps_its_children_with_their_text_uncompressed(
    feeds: Path, tmp_path: Path, capsys
):
    """Version 9 stores the text columns of `children` uncompressed (a few children's rows are
    read by number every batch): a version 8 master's children are copied into such a table,
    every row and column kept, the governance layer's columns included."""
    db = tmp_path / "master.duckdb"
    assert run_cli(["run", "--feeds", str(feeds), "--db", str(db)], capsys)[0] == 0
    rows = "SELECT * FROM children ORDER BY row_no"
    before = _query(db, rows)
    con = duckdb.connect(str(db))  # as version 8 made it: text compressed as DuckDB chooses
    _constraints_as_version_11_had_them(con)
    _keys_as_version_9_wrote_them(con)
    _text_compressed(con, "children")
    _text_compressed(con, "records")  # as version 10 had them
    _text_compressed(con, "scored_pairs")
    con.execute("UPDATE master_meta SET value = '8' WHERE key = 'schema_version'")
    con.close()
    assert run_cli(["run", "--feeds", str(feeds), "--db", str(db)], capsys)[0] == 0
    assert _query(db, rows) == before
    compression = _text_compression(db, "children")
    assert {compression[name] for name in ("child_id", *GOLDEN_FIELDS, "status")} == {
        "Uncompressed"}
    assert _query(db, "SELECT value FROM master_meta WHERE key = 'schema_version'") == [
        (SCHEMA_VERSION,)]


def test_a_version_9_master_keeps_its_order_keys_held_compactly(
    feeds: Path, tmp_path: Path, capsys
):
    """Version 10 holds each child's order keys as a map of the fields and the child's distinct
    keys, uncompressed: a version 9 master's arrays of twenty keys are re-encoded to the very
    keys this engine writes, every other column kept."""
    db = tmp_path / "master.duckdb"
    assert run_cli(["run", "--feeds", str(feeds), "--db", str(db)], capsys)[0] == 0
    rows = "SELECT * FROM children ORDER BY row_no"
    before = _query(db, rows)
    con = duckdb.connect(str(db))
    _constraints_as_version_11_had_them(con)
    _keys_as_version_9_wrote_them(con)
    con.execute("UPDATE master_meta SET value = '9' WHERE key = 'schema_version'")
    assert con.execute(rows).fetchall() != before
    con.close()
    assert run_cli(["run", "--feeds", str(feeds), "--db", str(db)], capsys)[0] == 0
    assert _query(db, rows) == before
    assert _query(db, "SELECT DISTINCT compression FROM pragma_storage_info('children') "
                      "WHERE column_name = 'survivorship_keys' AND segment_type = 'JSON'"
                  ) == [("Uncompressed",)]


def test_a_version_10_master_keeps_its_records_and_pairs_with_their_ids_uncompressed(
    feeds: Path, tmp_path: Path, capsys
):
    """Version 11 stores `records.child_id` and `scored_pairs`' record ids uncompressed (a
    batch reads them from scattered rows): a version 10 master's tables are copied into such
    tables, every row kept in its order."""
    db = tmp_path / "master.duckdb"
    assert run_cli(["run", "--feeds", str(feeds), "--db", str(db)], capsys)[0] == 0
    rows = {"records": "SELECT * FROM records", "scored_pairs": "SELECT * FROM scored_pairs"}
    before = {table: _query(db, sql) for table, sql in rows.items()}
    con = duckdb.connect(str(db))
    _constraints_as_version_11_had_them(con)
    for table in rows:
        _text_compressed(con, table)
    con.execute("UPDATE master_meta SET value = '10' WHERE key = 'schema_version'")
    con.close()
    assert _text_compression(db, "records")["child_id"] != "Uncompressed"
    assert run_cli(["run", "--feeds", str(feeds), "--db", str(db)], capsys)[0] == 0
    assert {table: _query(db, sql) for table, sql in rows.items()} == before
    assert _text_compression(db, "records")["child_id"] == "Uncompressed"
    pairs = _text_compression(db, "scored_pairs")
    assert (pairs["uid_a"], pairs["uid_b"]) == ("Uncompressed", "Uncompressed")
    assert _query(db, "SELECT value FROM master_meta WHERE key = 'schema_version'") == [
        (SCHEMA_VERSION,)]


def test_a_version_11_master_numbers_its_constraints_keeping_them(
    feeds: Path, tmp_path: Path, capsys
):
    """Version 12 numbers people's constraints (a batch finds a record's by number): a version
    11 master's constraints are numbered in place, every one kept."""
    db = tmp_path / "master.duckdb"
    assert run_cli(["run", "--feeds", str(feeds), "--db", str(db)], capsys)[0] == 0
    con = duckdb.connect(str(db))
    con.execute("""
        INSERT INTO constraints (kind, uid_a, uid_b, decided_by, reason, decided_at)
        SELECT 'cannot', min(unique_id), max(unique_id), 'user:jo', 'twins', now()
        FROM records GROUP BY child_id HAVING count(*) > 1 ORDER BY child_id LIMIT 5
    """)
    _constraints_as_version_11_had_them(con)
    rows = "SELECT kind, uid_a, uid_b, decided_by, reason, decided_at FROM constraints ORDER BY ALL"
    before = con.execute(rows).fetchall()
    con.execute("UPDATE master_meta SET value = '11' WHERE key = 'schema_version'")
    con.close()
    assert len(before) == 5
    assert run_cli(["run", "--feeds", str(feeds), "--db", str(db)], capsys)[0] == 0
    assert _query(db, rows) == before
    assert _query(db, "SELECT count(DISTINCT constraint_no), count(*) FROM constraints") == [
        (5, 5)]
    assert _query(db, "SELECT value FROM master_meta WHERE key = 'schema_version'") == [
        (SCHEMA_VERSION,)]


def _constraints_as_version_11_had_them(con: duckdb.DuckDBPyConnection) -> None:
    """`constraints` as versions before 12 declared it: without `constraint_no`."""
    con.execute("ALTER TABLE constraints DROP COLUMN constraint_no")
    con.execute("DROP SEQUENCE constraint_no_seq")


def _text_compressed(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """`table` copied into one declared as versions before 9 (`children`) and 11 (`records`,
    `scored_pairs`) declared it: text compressed as DuckDB chooses, and no index (masters
    gained `records_by_number` later)."""
    con.execute("DROP INDEX IF EXISTS records_by_number")
    ddl = con.execute("SELECT sql FROM duckdb_tables() WHERE table_name = ?", [table]
                      ).fetchall()[0][0]
    con.execute(f"ALTER TABLE {table} RENAME TO uncompressed")
    con.execute(ddl.replace(" USING COMPRESSION Uncompressed", ""))
    con.execute(f"INSERT INTO {table} SELECT * FROM uncompressed")
    con.execute("DROP TABLE uncompressed")


def _text_compression(db: Path, table: str) -> dict[str, str]:
    """How each text column of `table` is stored once checkpointed (its segments' least
    compression name)."""
    con = duckdb.connect(str(db))
    con.execute("CHECKPOINT")
    compression = dict(con.execute(f"""
        SELECT c.column_name, min(s.compression) FROM duckdb_columns() c
        JOIN pragma_storage_info('{table}') s USING (column_name)
        WHERE c.table_name = '{table}' AND c.data_type IN ('VARCHAR', 'JSON')
          AND s.segment_type = c.data_type GROUP BY ALL
    """).fetchall())
    con.close()
    return compression


def _keys_as_version_9_wrote_them(con: duckdb.DuckDBPyConnection) -> None:
    """Each child's `survivorship_keys` as versions 8 and 9 held them: a JSON array of every
    field's key, in `GOLDEN_FIELDS` order."""
    con.execute(f"""
        UPDATE children SET survivorship_keys = to_json({decoded_keys_sql("k")})
        FROM (SELECT row_no AS n, from_json(survivorship_keys, '["VARCHAR"]') AS k
              FROM children)
        WHERE row_no = n AND survivorship_keys IS NOT NULL
    """)


@pytest.mark.parametrize("make_feeds", ["missing", "a file"])
def test_unusable_feeds_folder(make_feeds: str, tmp_path: Path, capsys):
    feeds = tmp_path / "feeds"
    if make_feeds == "a file":
        feeds.write_text("not a folder")
    code, err = run_cli(["run", "--feeds", str(feeds), "--db", str(tmp_path / "m.duckdb")], capsys)
    assert code == 2
    assert err == f"contactpoint run: feeds folder {feeds} does not exist or is not a folder"
    assert not (tmp_path / "m.duckdb").exists()


def test_feeds_folder_without_read_permission(feeds: Path, tmp_path: Path, capsys, monkeypatch):
    """Permissions do not bind root (these tests' user), so the kernel's refusal is injected
    where the engine lists the folder."""
    listing = Path.iterdir

    def refuse(path: Path):
        if path == feeds:
            raise PermissionError(13, "Permission denied", str(path))
        return listing(path)

    monkeypatch.setattr(Path, "iterdir", refuse)
    code, err = run_cli(["run", "--feeds", str(feeds), "--db", str(tmp_path / "m.duckdb")], capsys)
    assert code == 2
    assert err == f"contactpoint run: feeds folder {feeds} cannot be read: Permission denied"
    assert not (tmp_path / "m.duckdb").exists()


@pytest.mark.parametrize("content, reason", [
    (None, "model file not found"),
    ("{not json", "is not readable JSON"),
    ('{"link_type": "dedupe_only"}', "not a ContactPoint model"),
])
def test_missing_or_corrupt_model(content: str | None, reason: str, feeds: Path, tmp_path: Path,
                                  capsys):
    model = tmp_path / "model.json"
    if content is not None:
        model.write_text(content)
    code, err = run_cli(["run", "--feeds", str(feeds), "--db", str(tmp_path / "m.duckdb"),
                         "--model", str(model)], capsys)
    assert code == 2
    assert len(err.splitlines()) == 1 and reason in err


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2_000_000, 2_000_000))


@pytest.mark.parametrize("follow", [False, True], ids=["bulk load", "following"])
def test_disk_full_while_writing_fails_cleanly_and_a_later_run_completes(
    feeds: Path, tmp_path: Path, follow: bool
):
    """Following too: the batch fails on the writer's thread, and the run stops with the
    reason rather than waiting for a line that would find the failure."""
    db = tmp_path / "master.duckdb"
    command = [sys.executable, "-m", "engine", "run", "--feeds", str(feeds), "--db", str(db),
               "--json"]
    full = subprocess.run([*command, *(["--follow"] if follow else [])], capture_output=True,
                          text=True, preexec_fn=_limit_file_size, timeout=120)
    assert full.returncode == 2
    assert full.stderr.strip().splitlines()[-1].startswith(
        "contactpoint run: writing the master failed:")

    subprocess.run(command, check=True, capture_output=True)
    reference = tmp_path / "reference.duckdb"
    subprocess.run([*command[:-2], str(reference), "--json"], check=True, capture_output=True)
    links = "SELECT feed, record_id, child_id, decision FROM links ORDER BY ALL"
    assert _query(db, links) == _query(reference, links)


def _query(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_the_engine_waits_a_moment_for_a_master_a_persons_act_holds(tmp_path: Path):
    from engine.master_store import open_master

    db = tmp_path / "master.duckdb"
    open_master(db).close()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); print('held', flush=True);"
        " time.sleep(1.0); con.close()"), str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        con = open_master(db, wait_s=10.0)  # the act ends within a second: the engine goes on
        con.close()
    finally:
        holder.wait(timeout=30)
