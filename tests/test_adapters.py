"""Feed adapters (raw line -> canonical Update) and the snapshot loader."""

from __future__ import annotations

import json
from dataclasses import FrozenInstanceError, asdict
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.adapters import DATE_FIELDS, MAX_LINE_CHARS, parse_line
from streams.canonical import (
    EVENTS,
    FEEDS,
    UPDATE_COLUMNS,
    UPDATE_SCHEMA,
    BadRecord,
    Update,
    UpdateDraft,
    finished,
    updates_to_arrow,
)
from streams.generator import GeneratorConfig, generate
from streams.names import standard_first_name
from streams.snapshot import read_updates

GRO_BIRTH = {
    "record_id": "gro-000001",
    "event": "birth",
    "event_time": "2009-01-05T10:00:00Z",
    "registration_id": "br-2009-000001",
    "forenames": "Alfie  james",
    "surname": "O’Neil-Smith",
    "sex": "M",
    "date_of_birth": "2009-01-01",
    "place_of_birth": "Leeds General Infirmary",
    "mother_forenames": "Anne Marie",
    "mother_surname": "O'Neil",
    "mother_maiden_surname": "Byrne",
    "father_forenames": "John",
    "father_surname": "Smith",
    "address_line1": "12  High Street",
    "address_line2": None,
    "town": "Leeds",
    "postcode": "ls11aa",
}
DWP_CLAIM = {
    "record_id": "dwp-77",
    "event": "new_claim",
    "event_time": "2009-02-01T00:30:00+01:00",
    "claim_reference": "CL-9",
    "child_reference": "ch 0042",
    "child_forenames": "Zoë",
    "child_surname": "Müller",
    "child_sex": "F",
    "child_date_of_birth": "2009-01-01",
    "claimant_forenames": "Hanna",
    "claimant_surname": "Müller",
    "claimant_nino": "ab 12 34 56 c",
    "address_line1": "Flat 2",
    "address_line2": "3 Mill Lane",
    "town": "Bradford",
    "postcode": "BD1 1AA",
}
NHS_REGISTRATION = {
    "record_id": "nhs-5",
    "event": "registration",
    "event_time": "2009-01-10T09:00:00Z",
    "nhs_number": "943 476 5919",
    "given_name": "Oliver",
    "other_given_names": "Tom  Lee",
    "family_name": "Smith",
    "gender": "1",
    "birth_date": "2009-01-01",
    "death_date": None,
    "address_line1": "12 High Street",
    "town": "Leeds",
    "postcode": "LS1 1AA",
    "gp_practice_code": "b86001",
}
CENSUS_RETURN = {
    "record_id": "cen-2014-1",
    "event": "census",
    "event_time": "2014-01-16T00:00:00Z",
    "upn": "a123456789012",
    "census_term": "2014-spring",
    "school_urn": "100234",
    "legal_forename": "Isabella",
    "legal_surname": "Smith",
    "preferred_forename": "Izzy",
    "preferred_surname": "SMITH",
    "former_surname": "Jones",
    "dob": "2009-01-01",
    "sex": "F",
    "postcode": "ls1 1aa",
    "nc_year_group": "R",
}
GOOD_RECORDS = {
    "gro": GRO_BIRTH,
    "dwp": DWP_CLAIM,
    "nhs": NHS_REGISTRATION,
    "census": CENSUS_RETURN,
}


def line_of(record: dict, **changes: object) -> str:
    """The record as one JSON line, with some fields changed (a value of ... removes it)."""
    changed = {**record, **changes}
    return json.dumps({k: v for k, v in changed.items() if v is not ...}, ensure_ascii=False)


def test_gro_birth_maps_field_by_field() -> None:
    assert parse_line("gro", line_of(GRO_BIRTH)) == Update(
        feed="gro",
        record_id="gro-000001",
        event="birth",
        event_time="2009-01-05T10:00:00Z",
        source_key="BR-2009-000001",
        first_name="ALFIE",
        middle_names="JAMES",
        first_name_std=standard_first_name("ALFIE"),  # the diminutive table's formal name
        surname="O'NEIL-SMITH",
        sex="M",
        date_of_birth="2009-01-01",
        address_line1="12 HIGH STREET",
        town="LEEDS",
        postcode="LS1 1AA",
        parent_forenames="ANNE MARIE",
        parent_surname="O'NEIL",
    )


def test_gro_death_has_no_source_key_but_keeps_nhs_number_and_falls_back_to_father() -> None:
    death = line_of(
        GRO_BIRTH,
        event="death",
        registration_id="DR-2010-7",
        date_of_death="2010-03-04",
        nhs_number="9434765919",
        sex="U",
        mother_forenames=None,
        mother_surname=...,
    )
    update = parse_line("gro", death)
    assert update.source_key is None
    assert update.nhs_number == "9434765919"
    assert update.date_of_death == "2010-03-04"
    assert update.sex is None
    assert (update.parent_forenames, update.parent_surname) == ("JOHN", "SMITH")


def test_dwp_claim_maps_field_by_field() -> None:
    assert parse_line("dwp", line_of(DWP_CLAIM)) == Update(
        feed="dwp",
        record_id="dwp-77",
        event="new_claim",
        event_time="2009-01-31T23:30:00Z",
        source_key="CH0042",
        first_name="ZOE",
        first_name_std="ZOE",
        surname="MULLER",
        sex="F",
        date_of_birth="2009-01-01",
        address_line1="FLAT 2",
        address_line2="3 MILL LANE",
        town="BRADFORD",
        postcode="BD1 1AA",
        parent_forenames="HANNA",
        parent_surname="MULLER",
        claimant_nino="AB123456C",
    )


def test_nhs_registration_maps_field_by_field() -> None:
    assert parse_line("nhs", line_of(NHS_REGISTRATION)) == Update(
        feed="nhs",
        record_id="nhs-5",
        event="registration",
        event_time="2009-01-10T09:00:00Z",
        source_key="9434765919",
        first_name="OLIVER",
        middle_names="TOM LEE",
        first_name_std="OLIVER",
        surname="SMITH",
        sex="M",
        date_of_birth="2009-01-01",
        address_line1="12 HIGH STREET",
        town="LEEDS",
        postcode="LS1 1AA",
        nhs_number="9434765919",
        gp_practice_code="B86001",
    )


@pytest.mark.parametrize(
    ("gender", "sex"), [("1", "M"), ("2", "F"), ("0", None), ("9", None), ("M", None), (None, None)]
)
def test_nhs_gender_codes_map_to_sex(gender: str | None, sex: str | None) -> None:
    assert parse_line("nhs", line_of(NHS_REGISTRATION, gender=gender)).sex == sex


def test_census_return_maps_field_by_field() -> None:
    assert parse_line("census", line_of(CENSUS_RETURN)) == Update(
        feed="census",
        record_id="cen-2014-1",
        event="census",
        event_time="2014-01-16T00:00:00Z",
        source_key="A123456789012",
        first_name="ISABELLA",
        first_name_std="ISABELLA",
        surname="SMITH",
        preferred_first_name="IZZY",
        preferred_surname=None,  # same as the legal surname once normalised
        former_surname="JONES",
        sex="F",
        date_of_birth="2009-01-01",
        postcode="LS1 1AA",
        upn="A123456789012",
        school_urn="100234",
    )


def test_unknown_fields_are_ignored_and_missing_ones_are_none() -> None:
    minimal = {"record_id": "c-1", "event": "census", "event_time": "2014-01-16T00:00:00Z"}
    update = parse_line("census", json.dumps({**minimal, "new_field_2030": "x"}))
    assert update == Update(
        feed="census", record_id="c-1", event="census", event_time="2014-01-16T00:00:00Z"
    )


@pytest.mark.parametrize(
    ("changes", "field", "expected"),
    [
        ({"postcode": "LS1"}, "postcode", "LS1"),
        ({"nhs_number": "9434765918"}, "nhs_number", "9434765918"),
        ({"birth_date": "1850-01-01"}, "date_of_birth", "1850-01-01"),
        ({"birth_date": "2099-01-01"}, "date_of_birth", "2099-01-01"),
        ({"gender": "7"}, "sex", None),
        (
            {"family_name": "Robert'); DROP TABLE children;--"},
            "surname",
            "ROBERT DROP TABLE CHILDREN",
        ),
        ({"family_name": "Zoë\u200b\x00"}, "surname", "ZOE"),
        ({"given_name": "   "}, "first_name", "TOM"),
        ({"postcode": ""}, "postcode", None),
        ({"death_date": ""}, "date_of_death", None),
        ({"event_time": "2009-01-10 09:00:00.5+00:00\r\n"}, "event_time", "2009-01-10T09:00:00Z"),
    ],
)
def test_noisy_values_are_evidence_not_errors(changes: dict, field: str, expected) -> None:
    update = parse_line("nhs", line_of(NHS_REGISTRATION, **changes))
    assert getattr(update, field) == expected


@pytest.mark.parametrize(
    ("feed", "line", "reason"),
    [
        ("foo", line_of(GRO_BIRTH), "unknown feed 'foo'"),
        ("gro", "", "empty line"),
        ("gro", "  \t\r\n", "empty line"),
        ("gro", '{"record_id": "1" "event": "birth"}', "invalid JSON: Expecting ',' delimiter"),
        ("gro", '{"record_id": "1", "surname": NaN}', "invalid JSON: NaN is not valid JSON"),
        ("gro", '{"record_id": "1", "x": -Infinity}', "invalid JSON: -Infinity is not valid JSON"),
        ("gro", '{"x": ' + "1" * 5000 + "}", "invalid JSON: Exceeds the limit"),
        ("gro", "[" * 60_000, "invalid JSON: nested too deeply"),
        ("gro", "[1, 2]", "not a JSON object (list)"),
        ("gro", '"birth"', "not a JSON object (str)"),
        ("gro", "null", "not a JSON object (NoneType)"),
        ("gro", line_of(GRO_BIRTH, record_id=...), "record_id missing or empty"),
        ("gro", line_of(GRO_BIRTH, record_id=None), "record_id missing or empty"),
        ("gro", line_of(GRO_BIRTH, record_id=" "), "record_id missing or empty"),
        ("gro", line_of(GRO_BIRTH, record_id="a\nb"), "record_id has non-printable characters"),
        ("gro", line_of(GRO_BIRTH, record_id="\ud800"), "record_id has non-printable characters"),
        ("gro", line_of(GRO_BIRTH, record_id=17), "field 'record_id' is int, expected string"),
        ("gro", line_of(GRO_BIRTH, event="adoption"), "unknown event 'adoption' for feed gro"),
        ("gro", line_of(GRO_BIRTH, event="census"), "unknown event 'census' for feed gro"),
        ("gro", line_of(GRO_BIRTH, event="Birth"), "unknown event 'Birth' for feed gro"),
        ("gro", line_of(GRO_BIRTH, event=...), "event missing for feed gro"),
        ("gro", line_of(GRO_BIRTH, surname=12), "field 'surname' is int, expected string or null"),
        ("gro", line_of(GRO_BIRTH, surname=1.5), "field 'surname' is float, expected string"),
        ("gro", line_of(GRO_BIRTH, sex=True), "field 'sex' is bool, expected string or null"),
        ("gro", line_of(GRO_BIRTH, forenames=["A"]), "field 'forenames' is list, expected"),
        ("gro", line_of(GRO_BIRTH, town={"a": "b"}), "field 'town' is dict, expected"),
        ("gro", line_of(GRO_BIRTH, extra=1), "field 'extra' is int, expected string or null"),
        (
            "gro",
            line_of(GRO_BIRTH, date_of_birth="2009-02-30"),
            "field 'date_of_birth' is not a real date: '2009-02-30'",
        ),
        (
            "gro",
            line_of(GRO_BIRTH, date_of_death="30/01/2010"),
            "field 'date_of_death' is not a real date: '30/01/2010'",
        ),
        (
            "dwp",
            line_of(DWP_CLAIM, child_date_of_birth="2009-1-1"),
            "field 'child_date_of_birth' is not a real date",
        ),
        (
            "nhs",
            line_of(NHS_REGISTRATION, death_date="2009-00-10"),
            "field 'death_date' is not a real date",
        ),
        ("census", line_of(CENSUS_RETURN, dob="20090101"), "field 'dob' is not a real date"),
        ("gro", line_of(GRO_BIRTH, event_time=...), "event_time missing or empty"),
        ("gro", line_of(GRO_BIRTH, event_time=""), "event_time missing or empty"),
        (
            "gro",
            line_of(GRO_BIRTH, event_time="2009-01-05T10:00:00"),
            "event_time is not ISO 8601 with Z or an offset: '2009-01-05T10:00:00'",
        ),
        ("gro", line_of(GRO_BIRTH, event_time="last tuesday"), "event_time is not ISO 8601"),
        ("gro", "x" * (MAX_LINE_CHARS + 1), "line too long: 65,537 characters (limit 65,536)"),
    ],
)
def test_bad_lines_raise_bad_record_with_a_specific_reason(feed: str, line: str, reason: str):
    with pytest.raises(BadRecord) as raised:
        parse_line(feed, line)
    message = str(raised.value)
    assert message.startswith(reason)
    assert "\n" not in message and len(message) < 200


def test_date_fields_of_another_feed_are_unknown_fields_and_ignored() -> None:
    assert parse_line("census", line_of(CENSUS_RETURN, date_of_birth="not a date")).upn


@pytest.mark.parametrize(
    "line",
    [
        "\ufeff" + line_of(GRO_BIRTH),
        line_of(GRO_BIRTH) + "  \r\n",
        line_of(GRO_BIRTH).replace("{", '{"surname": 12, ', 1),  # duplicate key: the last wins
        line_of(GRO_BIRTH, place_of_birth="x" * 60_000),
    ],
)
def test_harmless_oddities_still_parse(line: str) -> None:
    assert parse_line("gro", line).surname == "O'NEIL-SMITH"


@pytest.mark.parametrize(
    ("tail", "reason"),
    [("\x0b", "invalid JSON: Extra data"), (" {}", "invalid JSON: Extra data"), ("}", "invalid")],
)
def test_anything_but_json_whitespace_after_the_object_is_bad(tail: str, reason: str) -> None:
    with pytest.raises(BadRecord, match=reason):
        parse_line("gro", line_of(GRO_BIRTH) + tail)


def test_a_parsed_update_is_the_frozen_update_of_its_values() -> None:
    update = parse_line("census", line_of(CENSUS_RETURN))
    assert type(update) is Update
    assert update == Update(**asdict(update))
    assert hash(update) == hash(Update(**asdict(update)))
    with pytest.raises(FrozenInstanceError):
        update.surname = "SMITH"  # type: ignore[misc]


def test_a_finished_draft_is_the_update_of_the_fields_set() -> None:
    draft = UpdateDraft("gro", "gro-1", "birth", "2009-01-05T10:00:00Z")
    draft.surname = "SMITH"
    assert finished(draft) == Update(
        feed="gro", record_id="gro-1", event="birth", event_time="2009-01-05T10:00:00Z",
        surname="SMITH",
    )


def test_updates_become_arrow_rows_in_order_and_no_updates_an_empty_table() -> None:
    updates = [parse_line(feed, line_of(record)) for feed, record in GOOD_RECORDS.items()]
    table = updates_to_arrow(updates)
    assert table.schema == UPDATE_SCHEMA
    assert table.to_pylist() == [asdict(update) for update in updates]
    assert updates_to_arrow([]).equals(UPDATE_SCHEMA.empty_table())


def test_every_event_of_every_feed_is_accepted() -> None:
    for feed, events in EVENTS.items():
        for event in events:
            assert parse_line(feed, line_of(GOOD_RECORDS[feed], event=event)).event == event


def test_date_fields_named_for_each_feed_are_the_contract_ones() -> None:
    assert set(DATE_FIELDS) == set(FEEDS)
    for feed, date_fields in DATE_FIELDS.items():
        for field in date_fields:
            with pytest.raises(BadRecord, match=f"field '{field}' is not a real date"):
                parse_line(feed, line_of(GOOD_RECORDS[feed], **{field: "2001-02-29"}))


def _assert_arrow_ready(update: Update) -> None:
    """Every field a UTF-8 encodable string or None, so the update goes into an Arrow batch."""
    for column in UPDATE_COLUMNS:
        value = getattr(update, column)
        assert value is None or (isinstance(value, str) and value.encode("utf-8")), column
    assert updates_to_arrow([update]).num_rows == 1


@settings(max_examples=300, deadline=None)
@given(feed=st.sampled_from([*FEEDS, "foo", ""]), line=st.text())
def test_any_text_parses_or_raises_bad_record(feed: str, line: str) -> None:
    try:
        update = parse_line(feed, line)
    except BadRecord as error:
        assert str(error) and "\n" not in str(error)
    else:
        _assert_arrow_ready(update)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(), children),
    max_leaves=8,
)
KNOWN_FIELDS = sorted({key for record in GOOD_RECORDS.values() for key in record})


@settings(max_examples=300, deadline=None)
@given(
    feed=st.sampled_from(FEEDS),
    record=st.dictionaries(
        st.sampled_from(KNOWN_FIELDS) | st.text(max_size=5), st.none() | st.text() | JSON_VALUES
    ),
    base=st.sampled_from(list(GOOD_RECORDS.values())),
)
def test_any_json_object_parses_or_raises_bad_record(feed: str, record: dict, base: dict) -> None:
    try:
        update = parse_line(feed, json.dumps({**base, **record}))
    except BadRecord as error:
        assert str(error) and "\n" not in str(error)
    else:
        _assert_arrow_ready(update)


def write_feed(folder: Path, feed: str, name: str, lines: list[str]) -> None:
    (folder / feed).mkdir(parents=True, exist_ok=True)
    (folder / feed / name).write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def test_snapshot_reads_good_records_of_every_file_in_name_order(tmp_path: Path) -> None:
    write_feed(tmp_path, "gro", "2009-02.jsonl", [line_of(GRO_BIRTH, record_id="g2")])
    write_feed(
        tmp_path, "gro", "2009-01.jsonl", [line_of(GRO_BIRTH, record_id="g1"), "not json", ""]
    )
    write_feed(tmp_path, "census", "2014.jsonl", [line_of(CENSUS_RETURN)])
    write_feed(tmp_path, "census", "notes.txt", ["ignored"])
    (tmp_path / "nhs").mkdir()
    (tmp_path / "dwp").mkdir()
    (tmp_path / "dwp" / "bad.jsonl").write_bytes(
        b'{"record_id": "\xff"}\n' + line_of(DWP_CLAIM).encode() + b"\n"
    )

    snapshot = read_updates(tmp_path)

    assert snapshot.updates.schema == UPDATE_SCHEMA
    assert snapshot.updates.column("record_id").to_pylist() == ["g1", "g2", "dwp-77", "cen-2014-1"]
    assert snapshot.bad_lines == 3
    assert snapshot.files == 4


def test_snapshot_of_chosen_feeds_in_an_empty_folder_is_an_empty_table(tmp_path: Path) -> None:
    snapshot = read_updates(tmp_path, feeds=["nhs"])
    assert (snapshot.updates.num_rows, snapshot.bad_lines, snapshot.files) == (0, 0, 0)
    assert snapshot.updates.schema == UPDATE_SCHEMA


def test_generated_feeds_parse_exactly_as_their_truth_says(tmp_path: Path) -> None:
    generate(children=400, seed=7, out=tmp_path, config=GeneratorConfig(bad_line_rate=0.05))
    truth = [row.split(",") for row in (tmp_path / "truth.csv").read_text().splitlines()[1:]]
    bad_kinds_seen = set()
    for feed in FEEDS:
        lines = [
            line
            for path in sorted((tmp_path / "feeds" / feed).glob("*.jsonl"))
            for line in path.read_text(encoding="utf-8").split("\n")[:-1]
        ]
        rows = [
            (record_id, bad_kind) for row_feed, record_id, _, bad_kind in truth if row_feed == feed
        ]
        assert len(lines) == len(rows)
        for line, (record_id, bad_kind) in zip(lines, rows, strict=True):
            if bad_kind:
                with pytest.raises(BadRecord):
                    parse_line(feed, line)
                bad_kinds_seen.add(bad_kind)
            else:
                assert parse_line(feed, line).record_id == record_id
    assert len(bad_kinds_seen) >= 4
