"""Declared feeds ("bring your own data"): a TOML declaration turns a CSV, JSONL or Parquet person
dataset into a feed the engine streams, trains on and evaluates like the national feeds."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import json
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from streams.canonical import BadRecord, Update
from streams.declared import (
    CANONICAL_FIELDS,
    DeclarationError,
    declared_feeds,
    import_declared_feed,
    parse_declared_line,
)
from streams.snapshot import read_updates

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "own-data" / "people.toml"

# One source column per canonical field, and the raw value a source would send in it.
RAW_VALUES: dict[str, str] = {
    "first_name": "mary-jane  louise",
    "middle_names": "ann",
    "surname": "o’neil",
    "preferred_first_name": "Molly Ann",
    "preferred_surname": "smith",
    "former_surname": "Byrne",
    "sex": "F",
    "date_of_birth": "2010-03-04",
    "date_of_death": "2011-05-06",
    "address_line1": " 12  high st ",
    "address_line2": "flat 2",
    "town": "leeds",
    "postcode": "ls61aa",
    "nhs_number": "943 476 5919",
    "upn": "a123 456",
    "parent_forenames": "anne",
    "parent_surname": "o'neil",
    "claimant_nino": "ab 12 34 56 c",
    "school_urn": "100 234",
    "gp_practice_code": "b86001",
}
EXPECTED = Update(
    feed="clinic", record_id="r1", event="record", event_time="2012-01-02T03:04:05Z",
    source_key="K1", first_name="MARY-JANE", middle_names="LOUISE ANN", first_name_std="MARY-JANE",
    surname="O'NEIL", preferred_first_name="MOLLY", preferred_surname="SMITH",
    former_surname="BYRNE", sex="F", date_of_birth="2010-03-04", date_of_death="2011-05-06",
    address_line1="12 HIGH ST", address_line2="FLAT 2", town="LEEDS", postcode="LS6 1AA",
    nhs_number="9434765919", upn="A123456", parent_forenames="ANNE", parent_surname="O'NEIL",
    claimant_nino="AB123456C", school_urn="100234", gp_practice_code="B86001",
)


def declare(folder: Path, data_file: str, fmt: str, columns: dict[str, str], *,
            extra: str = "", tables: str = "") -> Path:
    """Write `folder/feed.declaration.toml` for feed `clinic` reading `data_file`."""
    mapping = "\n".join(f'{field} = "{column}"' for field, column in columns.items())
    path = folder / "clinic.toml"
    path.write_text(
        f'[feed]\nname = "clinic"\npath = "{data_file}"\nformat = "{fmt}"\n'
        f'record_id = "id"\n{extra}\n[columns]\n{mapping}\n{tables}',
        encoding="utf-8",
    )
    return path


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_dataset(path: Path, fmt: str, rows: list[dict[str, str]]) -> Path:
    if fmt == "csv":
        return write_csv(path, rows)
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        return path
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def feed_lines(feeds: Path, feed: str, stem: str) -> list[str]:
    return (feeds / feed / f"{stem}.jsonl").read_text(encoding="utf-8").splitlines()


def refusal(line: str) -> str:
    """The reason parse_declared_line gives for a line it must refuse."""
    with pytest.raises(BadRecord) as refused:
        parse_declared_line("clinic", line)
    return str(refused.value)


# ---------------------------------------------------------------- the example


def test_example_imports_every_row_and_keeps_the_impossible_date_as_unknown(
    tmp_path: Path,
) -> None:
    summary = import_declared_feed(EXAMPLE, tmp_path / "feeds", tmp_path / "truth.csv")

    source_rows = len((EXAMPLE.parent / "people.csv").read_text().splitlines()) - 1
    assert (summary.feed, summary.records, summary.rejected) == ("hospital", source_rows, 0)
    assert summary.duplicate_record_ids == 0
    assert summary.unparsed == {"date_of_birth": 1}
    assert summary.unparsed_examples == (
        f"record {source_rows}: date_of_birth '31/02/2015' is not a real date; "
        "kept with date_of_birth unknown",
    )
    assert (tmp_path / "feeds" / "hospital" / "feed.toml").read_bytes() == EXAMPLE.read_bytes()
    assert declared_feeds(tmp_path / "feeds") == ("hospital",)
    truth = (tmp_path / "truth.csv").read_text().splitlines()
    assert truth[0] == "feed,record_id,person_id,bad_kind"
    assert len(truth) == source_rows + 1
    assert truth[-1] == "hospital,P9999,person-5,"


def test_example_data_is_what_its_script_writes(tmp_path: Path) -> None:
    script = EXAMPLE.parent / "make_people.py"
    shutil.copy(script, tmp_path / script.name)
    namespace: dict = {"__file__": str(tmp_path / script.name), "__name__": "example"}
    exec(compile(script.read_text(), str(script), "exec"), namespace)  # noqa: S102
    namespace["main"]()
    assert (tmp_path / "people.csv").read_bytes() == (EXAMPLE.parent / "people.csv").read_bytes()


# ---------------------------------------------------------------- mappings and values


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_every_canonical_field_maps_from_each_format(tmp_path: Path, fmt: str) -> None:
    row = {"id": "r1", "key": "k1", "when": "2012-01-02T04:04:05+01:00"}
    row |= {f"src_{field}": value for field, value in RAW_VALUES.items()}
    write_dataset(tmp_path / f"people.{fmt}", fmt, [row])
    declaration = declare(
        tmp_path, f"people.{fmt}", fmt, {field: f"src_{field}" for field in CANONICAL_FIELDS},
        extra='source_key = "key"\nevent_time = "when"',
    )

    summary = import_declared_feed(declaration, tmp_path / "feeds", None)

    assert (summary.records, summary.rejected, summary.truth_rows) == (1, 0, 0)
    [line] = feed_lines(tmp_path / "feeds", "clinic", "people")
    assert parse_declared_line("clinic", line) == EXPECTED


def test_typed_parquet_columns_become_contract_strings(tmp_path: Path) -> None:
    table = pa.table({
        "id": pa.array([17], pa.int64()),
        "nhs": pa.array([9434765919], pa.int64()),
        "born": pa.array([dt.date(2010, 3, 4)], pa.date32()),
        "seen": pa.array([dt.datetime(2012, 1, 2, 3, 4, 5)], pa.timestamp("s")),
    })
    pq.write_table(table, tmp_path / "typed.parquet")
    declaration = declare(tmp_path, "typed.parquet", "parquet",
                          {"nhs_number": "nhs", "date_of_birth": "born"},
                          extra='event_time = "seen"\ndate_format = "%d/%m/%Y"')

    import_declared_feed(declaration, tmp_path / "feeds")

    update = parse_declared_line("clinic", feed_lines(tmp_path / "feeds", "clinic", "typed")[0])
    assert (update.record_id, update.nhs_number, update.date_of_birth, update.event_time) == (
        "17", "9434765919", "2010-03-04", "2012-01-02T03:04:05Z"
    )


DATES = [{"id": "a", "dob": "04/03/2010", "dod": "05/06/2011"},
         {"id": "b", "dob": "31/02/2010", "dod": ""},
         {"id": "c", "dob": "", "dod": "30/02/2011"},
         {"id": "d", "dob": "2010-03-04", "dod": ""}]


def test_an_unparseable_date_is_kept_as_evidence_with_the_field_unknown(tmp_path: Path) -> None:
    write_csv(tmp_path / "dates.csv", DATES)
    declaration = declare(tmp_path, "dates.csv", "csv",
                          {"date_of_birth": "dob", "date_of_death": "dod"},
                          extra='date_format = "%d/%m/%Y"')

    summary = import_declared_feed(declaration, tmp_path / "feeds")

    assert (summary.rejected, summary.unparsed) == (0, {"date_of_birth": 1, "date_of_death": 1})
    lines = feed_lines(tmp_path / "feeds", "clinic", "dates")
    updates = [parse_declared_line("clinic", line) for line in lines]
    assert [u.date_of_birth for u in updates] == ["2010-03-04", None, None, "2010-03-04"]
    assert [u.date_of_death for u in updates] == ["2011-06-05", None, None, None]
    assert json.loads(lines[1])["date_of_birth_as_given"] == "31/02/2010"
    assert json.loads(lines[2])["date_of_death_as_given"] == "30/02/2011"


def test_a_required_date_that_does_not_parse_sends_the_record_to_dead_letters(
    tmp_path: Path,
) -> None:
    write_csv(tmp_path / "dates.csv", DATES)
    declaration = declare(tmp_path, "dates.csv", "csv",
                          {"date_of_birth": "dob", "date_of_death": "dod"},
                          extra='date_format = "%d/%m/%Y"\nrequired = ["date_of_birth"]')

    summary = import_declared_feed(declaration, tmp_path / "feeds")

    assert (summary.rejected, summary.unparsed) == (1, {"date_of_death": 1})
    lines = feed_lines(tmp_path / "feeds", "clinic", "dates")
    assert refusal(lines[1]) == "field 'date_of_birth' is not a real date: '31/02/2010'"
    assert parse_declared_line("clinic", lines[2]).date_of_death is None


def test_event_time_is_read_as_iso_or_date_format_and_defaults_to_the_file_time(
    tmp_path: Path,
) -> None:
    rows = [{"id": "a", "at": "2012-01-02T03:04:05+01:00"}, {"id": "b", "at": "2012-01-02 03:04"},
            {"id": "c", "at": "02/01/2012"}, {"id": "d", "at": ""}, {"id": "e", "at": "soon"}]
    data = write_csv(tmp_path / "times.csv", rows)
    os.utime(data, (0, dt.datetime(2015, 6, 7, 8, 9, 10, tzinfo=dt.UTC).timestamp()))
    declaration = declare(tmp_path, "times.csv", "csv", {"surname": "id"},
                          extra='event_time = "at"\ndate_format = "%d/%m/%Y"')

    import_declared_feed(declaration, tmp_path / "feeds")

    lines = feed_lines(tmp_path / "feeds", "clinic", "times")
    assert [json.loads(line)["event_time"] for line in lines] == [
        "2012-01-02T02:04:05Z", "2012-01-02T03:04:00Z", "2012-01-02T00:00:00Z",
        "2015-06-07T08:09:10Z", "soon",
    ]
    assert refusal(lines[4]) == "event_time is not ISO 8601 with Z or an offset: 'soon'"


def test_sex_codes_map_source_codes_and_any_other_code_is_unknown(tmp_path: Path) -> None:
    rows = [{"id": str(i), "g": code} for i, code in enumerate(["1", " 2 ", "9", "F", "x", ""])]
    write_csv(tmp_path / "sex.csv", rows)
    declaration = declare(tmp_path, "sex.csv", "csv", {"sex": "g"},
                          tables='[sex_codes]\n"1" = "M"\n"2" = "F"\n"X" = "F"\n')

    import_declared_feed(declaration, tmp_path / "feeds")

    lines = feed_lines(tmp_path / "feeds", "clinic", "sex")
    assert [parse_declared_line("clinic", line).sex for line in lines] == [
        "M", "F", None, None, "F", None
    ]


def test_without_sex_codes_m_and_f_are_read_in_any_case(tmp_path: Path) -> None:
    write_csv(tmp_path / "sex.csv", [{"id": "1", "g": "m"}, {"id": "2", "g": "Female"}])
    declaration = declare(tmp_path, "sex.csv", "csv", {"sex": "g"})

    import_declared_feed(declaration, tmp_path / "feeds")

    lines = feed_lines(tmp_path / "feeds", "clinic", "sex")
    assert [parse_declared_line("clinic", line).sex for line in lines] == ["M", None]


def test_a_latin_1_csv_is_read_with_its_declared_encoding(tmp_path: Path) -> None:
    (tmp_path / "old.csv").write_bytes("id,name\n1,Zoë\n".encode("latin-1"))
    declaration = declare(tmp_path, "old.csv", "csv", {"first_name": "name"},
                          extra='encoding = "latin-1"')

    import_declared_feed(declaration, tmp_path / "feeds")

    [line] = feed_lines(tmp_path / "feeds", "clinic", "old")
    assert parse_declared_line("clinic", line).first_name == "ZOE"


# ---------------------------------------------------------------- bad rows and bad declarations


def test_bad_rows_become_lines_the_adapter_refuses_with_a_reason(tmp_path: Path) -> None:
    (tmp_path / "rows.csv").write_text(
        "id,name,dob\n"
        "good,Amy,2010-01-01\n"
        ",NoId,2010-01-01\n"
        "extra,Bob,2010-01-01,surplus\n"
        "date,Cat,2010-13-01\n",
        encoding="utf-8",
    )
    declaration = declare(tmp_path, "rows.csv", "csv",
                          {"first_name": "name", "date_of_birth": "dob"},
                          extra='required = ["date_of_birth"]')

    summary = import_declared_feed(declaration, tmp_path / "feeds")

    lines = feed_lines(tmp_path / "feeds", "clinic", "rows")
    assert (summary.records, summary.rejected, len(lines)) == (4, 3, 4)
    assert parse_declared_line("clinic", lines[0]).first_name == "AMY"
    assert [refusal(line) for line in lines[1:]] == [
        "record_id missing or empty",
        "field 'csv_extra_cells' is list, expected string or null",
        "field 'date_of_birth' is not a real date: '2010-13-01'",
    ]


def test_bad_jsonl_lines_are_kept_for_the_engine_to_refuse(tmp_path: Path) -> None:
    (tmp_path / "rows.jsonl").write_text(
        '{"id": "1", "name": "Amy"}\n'
        "not json\n"
        "\n"
        '["a", "list"]\n'
        '{"id": "4", "name": {"first": "Bob"}}\n',
        encoding="utf-8",
    )
    declaration = declare(tmp_path, "rows.jsonl", "jsonl", {"first_name": "name"})

    summary = import_declared_feed(declaration, tmp_path / "feeds")

    lines = feed_lines(tmp_path / "feeds", "clinic", "rows")
    assert (summary.records, summary.rejected) == (4, 3)
    assert [refusal(line) for line in lines[1:]] == [
        "invalid JSON: Expecting value at column 1",
        "not a JSON object (list)",
        "field 'first_name' is dict, expected string or null",
    ]


def test_a_repeated_record_id_is_counted(tmp_path: Path) -> None:
    write_csv(tmp_path / "dup.csv", [{"id": "1", "n": "A"}, {"id": "1", "n": "B"}])
    declaration = declare(tmp_path, "dup.csv", "csv", {"first_name": "n"})

    assert import_declared_feed(declaration, tmp_path / "feeds").duplicate_record_ids == 1


@pytest.mark.parametrize(
    ("extra", "columns", "tables", "reason"),
    [
        ("", {"given_name": "name"}, "", "unknown key 'given_name' in [columns]"),
        ("", {"surname": "family"}, "", "column 'family' is not in people.csv"),
        ('truth = "who"', {"surname": "name"}, "", "column 'who' is not in people.csv"),
        ('delimiter = ";"', {"surname": "name"}, "", "column 'id' is not in people.csv"),
        ('date_format = "%d/%m"', {"surname": "name"}, "",
         "date_format '%d/%m' cannot read a full date back"),
        ('recordid = "id"', {"surname": "name"}, "", "unknown key 'recordid' in [feed]"),
        ("", {}, "", "the declaration maps no [columns] onto canonical fields"),
        ("", {"sex": "name"}, '[sex_codes]\n"1" = "male"\n',
         "[sex_codes] '1' must map to \"M\" or \"F\", not 'male'"),
        ("", {"surname": "name"}, "[links]\na = \"b\"\n", "unknown key 'links' in the declaration"),
        ('encoding = "klingon"', {"surname": "name"}, "", "unknown encoding 'klingon'"),
    ],
)
def test_bad_declarations_raise_a_one_line_reason(
    tmp_path: Path, extra: str, columns: dict[str, str], tables: str, reason: str
) -> None:
    write_csv(tmp_path / "people.csv", [{"id": "1", "name": "Amy"}])
    declaration = declare(tmp_path, "people.csv", "csv", columns, extra=extra, tables=tables)

    with pytest.raises(DeclarationError) as error:
        import_declared_feed(declaration, tmp_path / "feeds")

    assert str(error.value).startswith(reason)
    assert not (tmp_path / "feeds" / "clinic" / "people.jsonl").exists()


@pytest.mark.parametrize(
    ("replace", "reason"),
    [
        (('format = "csv"', 'format = "xlsx"'), "unknown format 'xlsx' (expected csv | jsonl"),
        (('path = "people.csv"', 'path = "nowhere.csv"'), "data file"),
        (('name = "clinic"', 'name = "nhs"'), "feed name 'nhs' is a national feed"),
        (('name = "clinic"', 'name = "a-b"'), "feed name 'a-b' must be 1-32 lower-case"),
        (('record_id = "id"\n', ""), "[feed] has no 'record_id'"),
        (("[feed]", "feed = 1\n[x]"), "unknown key 'x' in the declaration"),
        (('format = "csv"', "format = 3"), "[feed] format must be a string, not 3"),
        (('name = "clinic"', "name = "), "clinic.toml is not valid TOML"),
    ],
)
def test_malformed_declarations_raise_a_one_line_reason(
    tmp_path: Path, replace: tuple[str, str], reason: str
) -> None:
    write_csv(tmp_path / "people.csv", [{"id": "1", "name": "Amy"}])
    declaration = declare(tmp_path, "people.csv", "csv", {"surname": "name"})
    declaration.write_text(declaration.read_text().replace(*replace))

    with pytest.raises(DeclarationError) as error:
        import_declared_feed(declaration, tmp_path / "feeds")

    assert reason in str(error.value)
    assert "\n" not in str(error.value)


def test_a_missing_declaration_or_unreadable_data_is_a_declaration_error(tmp_path: Path) -> None:
    with pytest.raises(DeclarationError, match="does not exist"):
        import_declared_feed(tmp_path / "absent.toml", tmp_path / "feeds")
    (tmp_path / "people.parquet").write_bytes(b"not parquet")
    declaration = declare(tmp_path, "people.parquet", "parquet", {"surname": "name"})
    with pytest.raises(DeclarationError, match="not a readable Parquet file"):
        import_declared_feed(declaration, tmp_path / "feeds")
    (tmp_path / "people.csv").write_bytes(b"id,name\n1,\xff\xfe\n")
    declaration = declare(tmp_path, "people.csv", "csv", {"surname": "name"})
    with pytest.raises(DeclarationError, match="is not utf-8-sig text"):
        import_declared_feed(declaration, tmp_path / "feeds")


# ---------------------------------------------------------------- truth, folders, snapshot


def test_truth_rows_of_the_feed_are_replaced_and_other_feeds_rows_kept(tmp_path: Path) -> None:
    truth = tmp_path / "truth.csv"
    truth.write_text("feed,record_id,person_id,bad_kind\ngro,g1,p1,\nclinic,old,p0,\n")
    write_csv(tmp_path / "people.csv", [{"id": "1", "name": "Amy", "who": "p1"},
                                        {"id": "2", "name": "Amy", "who": ""}])
    declaration = declare(tmp_path, "people.csv", "csv", {"first_name": "name"},
                          extra='truth = "who"')

    for _ in range(2):
        summary = import_declared_feed(declaration, tmp_path / "feeds", truth)

    assert summary.truth_rows == 2
    assert truth.read_text().splitlines() == [
        "feed,record_id,person_id,bad_kind", "gro,g1,p1,", "clinic,1,p1,", "clinic,2,,",
    ]


def test_declared_feeds_are_the_folders_holding_a_declaration(tmp_path: Path) -> None:
    for folder in ("nhs", "clinic", "apothecary", "notes"):
        (tmp_path / folder).mkdir()
    (tmp_path / "clinic" / "feed.toml").write_text("")
    (tmp_path / "apothecary" / "feed.toml").write_text("")
    (tmp_path / "feed.toml").write_text("")

    assert declared_feeds(tmp_path) == ("apothecary", "clinic")
    assert declared_feeds(tmp_path / "absent") == ()


def test_parse_declared_line_accepts_only_the_record_event() -> None:
    line = {"record_id": "1", "event_time": "2012-01-02T03:04:05Z", "first_name": "Al B"}
    update = parse_declared_line("clinic", json.dumps({**line, "event": "record"}))
    assert (update.first_name, update.middle_names, update.event) == ("AL", "B", "record")
    assert refusal(json.dumps({**line, "event": "birth"})) == (
        "unknown event 'birth' for feed clinic"
    )
    assert refusal(json.dumps({**line, "event": "record", "nhs_number": 9})) == (
        "field 'nhs_number' is int, expected string or null"
    )


def test_snapshot_reads_declared_feeds_with_their_adapter(tmp_path: Path) -> None:
    feeds = tmp_path / "feeds"
    import_declared_feed(EXAMPLE, feeds)
    (feeds / "unregistered").mkdir()
    (feeds / "unregistered" / "x.jsonl").write_text('{"record_id": "1"}\n')

    snapshot = read_updates(feeds)

    assert (snapshot.files, snapshot.bad_lines) == (1, 0)  # the impossible date: unknown
    assert set(snapshot.updates.column("feed").to_pylist()) == {"hospital"}
    assert read_updates(feeds, feeds=["hospital"]).updates.num_rows == snapshot.updates.num_rows


# ---------------------------------------------------------------- end to end through the CLI


def _import_verb_wired() -> bool:
    from engine.cli import main

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            main(["import", "--help"])
        except SystemExit as exit_:
            return exit_.code == 0
    return False


def _accredit(db: Path, feed: str) -> None:
    """Register `feed` as an accredited source of the master (the engine refuses other feeds)."""
    from engine.governance.sources import register_source, registered_feeds
    from engine.master_store import open_master

    con = open_master(db)
    try:
        if feed not in registered_feeds(con):
            register_source(con, feed, "test-admin")
    finally:
        con.close()


@pytest.mark.skipif(not _import_verb_wired(), reason="`contactpoint import` is not wired yet")
def test_example_is_imported_trained_on_run_and_evaluated_with_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from engine.cli import main

    feeds, truth = tmp_path / "feeds", tmp_path / "truth.csv"
    model, db = tmp_path / "model.json", tmp_path / "master.duckdb"
    assert main(["import", "--declaration", str(EXAMPLE), "--feeds", str(feeds),
                 "--truth", str(truth)]) == 0
    assert main(["train", "--feeds", str(feeds), "--out", str(model)]) == 0
    _accredit(db, "hospital")
    capsys.readouterr()
    assert main(["run", "--feeds", str(feeds), "--db", str(db), "--model", str(model),
                 "--json"]) == 0
    run = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    until = (dt.date.today() + dt.timedelta(days=30)).isoformat()
    assert main(["users", "add", "admin", "--role", "admin", "--org", "DfE",
                 "--accredited-until", until, "--db", str(db)]) == 0
    assert main(["users", "add", "dm", "--role", "data_manager", "--org", "Trust", "--by",
                 "admin", "--accredited-until", until, "--db", str(db)]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--db", str(db), "--truth", str(truth), "--user", "dm",
                 "--reason", "model check", "--json"]) == 0
    scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    assert (run["updates"], run["dead_letters"]) == (231, 0)  # the impossible date: unknown
    assert (scores["true_children"], scores["found_children"]) == (150, 150)
    assert (scores["false_merges"], scores["missed_links"]) == (0, 0)
