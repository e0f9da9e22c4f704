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
from streams.canonical import EVENTS, BadRecord, Update, UpdateDraft, finished
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
FieldFiller = Callable[[Record, UpdateDraft], None]  # type: ignore[valid-type]


def parse_line(feed: str, line: str) -> Update:
    """Parse one raw JSONL line of `feed` into a canonical Update; raise BadRecord(reason) if bad.

    Unknown fields are ignored; missing (or null) fields become None; of duplicate keys the last
    wins (as in every mainstream JSON parser). A missing or unparseable `event_time` (ISO 8601
    with `Z` or an offset) makes the line bad, as does a line longer than `MAX_LINE_CHARS`.
    """
    fill_fields = _FEED_FIELDS.get(feed)
    if fill_fields is None:
        raise BadRecord(f"unknown feed {_shown(feed)}")
    return parse_record_line(feed, line, EVENTS[feed], DATE_FIELDS[feed], fill_fields)


def parse_record_line(
    feed: str,
    line: str,
    events: tuple[str, ...],
    date_fields: tuple[str, ...],
    fill_fields: FieldFiller,
) -> Update:
    """The Update of one line of any feed that follows the feed contract: the line validated (a
    JSON object of strings or nulls, `record_id`, `event` one of `events`, `event_time`, real
    calendar dates in `date_fields`), then `fill_fields(record, update)` sets its canonical fields.
    Raises BadRecord(reason) for a bad line."""
    record = _json_object(line)
    _check_value_types(record)
    record_id, event = _record_id(record), _event(feed, record, events)
    update = UpdateDraft(feed, record_id, event, _event_time(record))
    _normalise_dates(record, date_fields)
    fill_fields(record, update)
    return finished(update)


def _gro_fields(record: Record, update: UpdateDraft) -> None:
    """A GRO birth or death registration. Only a birth's registration_id names the person."""
    get = record.get
    if get("event") == "birth":
        update.source_key = norm.code(get("registration_id"))
    fill_names(update, *norm.split_forenames(get("forenames")), get("surname"))
    update.sex = norm.sex(get("sex"), _SEX_MF)
    update.date_of_birth = get("date_of_birth")
    update.date_of_death = get("date_of_death")
    fill_address(update, record)
    update.nhs_number = norm.nhs_number(get("nhs_number"))
    update.parent_forenames, update.parent_surname = _parent_names(record)


def _dwp_fields(record: Record, update: UpdateDraft) -> None:
    """A DWP child benefit claim event, keyed by the child's reference."""
    get = record.get
    update.source_key = norm.code(get("child_reference"))
    fill_names(update, *norm.split_forenames(get("child_forenames")), get("child_surname"))
    update.sex = norm.sex(get("child_sex"), _SEX_MF)
    update.date_of_birth = get("child_date_of_birth")
    fill_address(update, record)
    update.parent_forenames = norm.name(get("claimant_forenames"))
    update.parent_surname = norm.name(get("claimant_surname"))
    update.claimant_nino = norm.code(get("claimant_nino"))


def _nhs_fields(record: Record, update: UpdateDraft) -> None:
    """An NHS demographics (PDS) event, keyed by NHS number."""
    get = record.get
    forenames = first_and_middle_names(get("given_name"), get("other_given_names"))
    update.source_key = update.nhs_number = norm.nhs_number(get("nhs_number"))
    fill_names(update, *forenames, get("family_name"))
    update.sex = norm.sex(get("gender"), _SEX_NHS)
    update.date_of_birth = get("birth_date")
    update.date_of_death = get("death_date")
    fill_address(update, record)
    update.gp_practice_code = norm.code(get("gp_practice_code"))


def _census_fields(record: Record, update: UpdateDraft) -> None:
    """A school census return, keyed by UPN. Preferred names are kept only when they differ
    from the legal ones."""
    get = record.get
    first_name, middle_names = norm.split_forenames(get("legal_forename"))
    surname = norm.name(get("legal_surname"))
    preferred_first_name, _ = norm.split_forenames(get("preferred_forename"))
    preferred_surname = norm.name(get("preferred_surname"))
    update.source_key = update.upn = norm.code(get("upn"))
    fill_names(update, first_name, middle_names, surname)
    update.preferred_first_name = _if_different(preferred_first_name, first_name)
    update.preferred_surname = _if_different(preferred_surname, surname)
    update.former_surname = norm.name(get("former_surname"))
    update.sex = norm.sex(get("sex"), _SEX_MF)
    update.date_of_birth = get("dob")
    update.postcode = norm.postcode(get("postcode"))
    update.school_urn = norm.code(get("school_urn"))


_FEED_FIELDS: dict[str, FieldFiller] = {
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


def fill_names(
    update: UpdateDraft, first_name: str | None, middle_names: str | None, surname: str | None
) -> None:
    """Set the name fields of an update; `surname` raw, the forenames already canonical."""
    update.first_name = first_name
    update.middle_names = middle_names
    update.first_name_std = standard_first_name(first_name)
    update.surname = norm.name(surname)


def fill_address(update: UpdateDraft, record: Record) -> None:
    """Set the address fields shared by gro, dwp, nhs and declared feeds."""
    get = record.get
    update.address_line1 = norm.text(get("address_line1"))
    update.address_line2 = norm.text(get("address_line2"))
    update.town = norm.text(get("town"))
    update.postcode = norm.postcode(get("postcode"))


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
