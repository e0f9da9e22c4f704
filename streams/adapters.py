"""Feed adapters: one raw JSON Lines record of a national feed -> one canonical `Update`.

`parse_line` is the only entry point. It validates a line against the feed contract (DESIGN.md,
"Feed contract") and raises `BadRecord` with a one-line reason for a bad line; everything else,
however noisy, becomes an `Update` with normalised values (see `streams.normalise`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from streams import normalise as norm
from streams.canonical import EVENTS, BadRecord, Update, new_update
from streams.names import standard_first_name

# A real record is well under 2 KB; a longer line is hostile or corrupt, not evidence.
MAX_LINE_CHARS = 65_536

DATE_FIELDS: dict[str, tuple[str, ...]] = {
    "gro": ("date_of_birth", "date_of_death"),
    "dwp": ("child_date_of_birth",),
    "nhs": ("birth_date", "death_date"),
    "census": ("dob",),
}

Record = dict[str, Any]


def parse_line(feed: str, line: str) -> Update:
    """Parse one raw JSONL line of `feed` into a canonical Update; raise BadRecord(reason) if bad.

    Unknown fields are ignored; missing (or null) fields become None; of duplicate keys the last
    wins (as in every mainstream JSON parser). A missing or unparseable `event_time` (ISO 8601
    with `Z` or an offset) makes the line bad, as does a line longer than `MAX_LINE_CHARS`.
    """
    feed_fields = _FEED_FIELDS.get(feed)
    if feed_fields is None:
        raise BadRecord(f"unknown feed {_shown(feed)}")
    return parse_record_line(feed, line, EVENTS[feed], DATE_FIELDS[feed], feed_fields)


def parse_record_line(
    feed: str,
    line: str,
    events: tuple[str, ...],
    date_fields: tuple[str, ...],
    feed_fields: Callable[[Record], dict[str, str | None]],
) -> Update:
    """The Update of one line of any feed that follows the feed contract: the line validated (a
    JSON object of strings or nulls, `record_id`, `event` one of `events`, `event_time`, real
    calendar dates in `date_fields`), then `feed_fields(record)` gives its canonical fields.
    Raises BadRecord(reason) for a bad line."""
    record = _json_object(line)
    _check_value_types(record)
    record_id, event = _record_id(record), _event(feed, record, events)
    event_time = _event_time(record)
    _normalise_dates(record, date_fields)
    fields = feed_fields(record)
    fields.update(feed=feed, record_id=record_id, event=event, event_time=event_time)
    return new_update(fields)


def _gro_fields(record: Record) -> dict[str, str | None]:
    """A GRO birth or death registration. Only a birth's registration_id names the person."""
    first_name, middle_names = norm.split_forenames(record.get("forenames"))
    parent_forenames, parent_surname = _parent_names(record)
    is_birth = record.get("event") == "birth"
    return {
        "source_key": norm.code(record.get("registration_id")) if is_birth else None,
        **name_fields(first_name, middle_names, record.get("surname")),
        "sex": norm.sex(record.get("sex"), _SEX_MF),
        "date_of_birth": record.get("date_of_birth"),
        "date_of_death": record.get("date_of_death"),
        **address_fields(record),
        "nhs_number": norm.nhs_number(record.get("nhs_number")),
        "parent_forenames": parent_forenames,
        "parent_surname": parent_surname,
    }


def _dwp_fields(record: Record) -> dict[str, str | None]:
    """A DWP child benefit claim event, keyed by the child's reference."""
    first_name, middle_names = norm.split_forenames(record.get("child_forenames"))
    return {
        "source_key": norm.code(record.get("child_reference")),
        **name_fields(first_name, middle_names, record.get("child_surname")),
        "sex": norm.sex(record.get("child_sex"), _SEX_MF),
        "date_of_birth": record.get("child_date_of_birth"),
        **address_fields(record),
        "parent_forenames": norm.name(record.get("claimant_forenames")),
        "parent_surname": norm.name(record.get("claimant_surname")),
        "claimant_nino": norm.code(record.get("claimant_nino")),
    }


def _nhs_fields(record: Record) -> dict[str, str | None]:
    """An NHS demographics (PDS) event, keyed by NHS number."""
    first_name, middle_names = first_and_middle_names(
        record.get("given_name"), record.get("other_given_names")
    )
    nhs_number = norm.nhs_number(record.get("nhs_number"))
    return {
        "source_key": nhs_number,
        **name_fields(first_name, middle_names, record.get("family_name")),
        "sex": norm.sex(record.get("gender"), _SEX_NHS),
        "date_of_birth": record.get("birth_date"),
        "date_of_death": record.get("death_date"),
        **address_fields(record),
        "nhs_number": nhs_number,
        "gp_practice_code": norm.code(record.get("gp_practice_code")),
    }


def _census_fields(record: Record) -> dict[str, str | None]:
    """A school census return, keyed by UPN. Preferred names are kept only when they differ
    from the legal ones."""
    first_name, middle_names = norm.split_forenames(record.get("legal_forename"))
    surname = norm.name(record.get("legal_surname"))
    preferred_first_name, _ = norm.split_forenames(record.get("preferred_forename"))
    preferred_surname = norm.name(record.get("preferred_surname"))
    upn = norm.code(record.get("upn"))
    return {
        "source_key": upn,
        **name_fields(first_name, middle_names, surname),
        "preferred_first_name": _if_different(preferred_first_name, first_name),
        "preferred_surname": _if_different(preferred_surname, surname),
        "former_surname": norm.name(record.get("former_surname")),
        "sex": norm.sex(record.get("sex"), _SEX_MF),
        "date_of_birth": record.get("dob"),
        "postcode": norm.postcode(record.get("postcode")),
        "upn": upn,
        "school_urn": norm.code(record.get("school_urn")),
    }


_FEED_FIELDS: dict[str, Callable[[Record], dict[str, str | None]]] = {
    "gro": _gro_fields,
    "dwp": _dwp_fields,
    "nhs": _nhs_fields,
    "census": _census_fields,
}
_SEX_MF = {"M": "M", "F": "F"}
_SEX_NHS = {"1": "M", "2": "F"}


def _json_object(line: str) -> Record:
    """The line's JSON object (a leading byte-order mark and surrounding whitespace ignored)."""
    if len(line) > MAX_LINE_CHARS:
        raise BadRecord(f"line too long: {len(line):,} characters (limit {MAX_LINE_CHARS:,})")
    if line.startswith("\ufeff"):
        line = line[1:]
    if line.startswith("{"):
        record = _plain_json_object(line)
        if record is not None:
            return record
    if not line or line.isspace():
        raise BadRecord("empty line")
    try:
        record = _DECODER.decode(line)
    except json.JSONDecodeError as error:
        raise BadRecord(f"invalid JSON: {error.msg} at column {error.colno}") from None
    except RecursionError:
        raise BadRecord("invalid JSON: nested too deeply") from None
    except ValueError as error:  # NaN/Infinity literals, integers too long to convert
        raise BadRecord(f"invalid JSON: {_first_sentence(error)}") from None
    if type(record) is not dict:
        raise BadRecord(f"not a JSON object ({type(record).__name__})")
    return record


def _plain_json_object(line: str) -> Record | None:
    """The JSON object a line starting with `{` holds, read by the decoder's C scanner without
    `JSONDecoder.decode`'s Python-level wrapper and its regexes; None when the line is anything
    but one object and JSON whitespace, for `_DECODER.decode` to say why."""
    try:
        record, end = _DECODER.scan_once(line, 0)
    except (StopIteration, ValueError, RecursionError):
        return None
    return None if line[end:].strip(_JSON_WHITESPACE) else record


def _check_value_types(record: Record) -> None:
    """Every value of the record, known field or not, must be a string or null."""
    if _STRING_OR_NULL.issuperset(map(type, record.values())):
        return
    for key, value in record.items():
        if value is not None and type(value) is not str:
            raise BadRecord(
                f"field {_shown(key)} is {type(value).__name__}, expected string or null"
            )


def _normalise_dates(record: Record, date_fields: tuple[str, ...]) -> None:
    """Replace each date field of the record by its canonical form (blank -> None), in place."""
    for field in date_fields:
        raw = record.get(field)
        if raw is None:
            continue
        try:
            record[field] = norm.calendar_date(raw)
        except ValueError:
            raise BadRecord(f"field {field!r} is not a real date: {_shown(raw)}") from None


def _record_id(record: Record) -> str:
    """The record's id within its feed, exactly as sent."""
    record_id = record.get("record_id")
    if not record_id or record_id.isspace():
        raise BadRecord("record_id missing or empty")
    if not record_id.isprintable():
        raise BadRecord(f"record_id has non-printable characters: {_shown(record_id)}")
    return record_id


def _event(feed: str, record: Record, events: tuple[str, ...]) -> str:
    """The record's event, one of the feed's `events`."""
    event = record.get("event")
    if event is None:
        raise BadRecord(f"event missing for feed {feed}")
    if event not in events:
        raise BadRecord(f"unknown event {_shown(event)} for feed {feed}")
    return event


def _event_time(record: Record) -> str:
    """The record's event time in UTC, `YYYY-MM-DDTHH:MM:SSZ`."""
    raw = record.get("event_time")
    if raw is None or not raw.strip():
        raise BadRecord("event_time missing or empty")
    try:
        return norm.utc_timestamp(raw)
    except ValueError:
        raise BadRecord(f"event_time is not ISO 8601 with Z or an offset: {_shown(raw)}") from None


def first_and_middle_names(given: str | None, others: str | None) -> tuple[str | None, str | None]:
    """First forename and middle names from a given name plus other given names."""
    if others is None:
        return norm.split_forenames(given)
    return norm.split_forenames(f"{given or ''} {others}")


def name_fields(
    first_name: str | None, middle_names: str | None, surname: str | None
) -> dict[str, str | None]:
    """The name fields of an update; `surname` raw, the forenames already canonical."""
    return {
        "first_name": first_name,
        "middle_names": middle_names,
        "first_name_std": standard_first_name(first_name),
        "surname": norm.name(surname),
    }


def address_fields(record: Record) -> dict[str, str | None]:
    """The address fields shared by gro, dwp, nhs and declared feeds."""
    return {
        "address_line1": norm.text(record.get("address_line1")),
        "address_line2": norm.text(record.get("address_line2")),
        "town": norm.text(record.get("town")),
        "postcode": norm.postcode(record.get("postcode")),
    }


def _parent_names(record: Record) -> tuple[str | None, str | None]:
    """The mother's (forenames, surname) on a GRO record; the father's when both are missing."""
    names = norm.name(record.get("mother_forenames")), norm.name(record.get("mother_surname"))
    if names == (None, None):
        names = norm.name(record.get("father_forenames")), norm.name(record.get("father_surname"))
    return names


def _if_different(preferred: str | None, legal: str | None) -> str | None:
    """The preferred name when it differs from the legal one, else None."""
    return preferred if preferred != legal else None


def _reject_constant(constant: str) -> None:
    """JSON has no NaN or Infinity; Python's decoder accepts them unless told otherwise."""
    raise ValueError(f"{constant} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
_JSON_WHITESPACE = " \t\n\r"
_STRING_OR_NULL = frozenset((str, type(None)))


def _first_sentence(error: ValueError) -> str:
    return str(error).split(";")[0].split("\n")[0][:200]


def _shown(value: object, limit: int = 60) -> str:
    """A short, one-line repr of a value for a dead-letter reason."""
    shown = repr(value)
    return shown if len(shown) <= limit else f"{shown[: limit - 4]}...{shown[-1]}"
