"""Bad input lines (they must reach dead_letters): one per kind in `config.BAD_KINDS`."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

from streams.generator.feeds import Record
from streams.generator.roles import FieldRoles

_IMPOSSIBLE_DAYS = ("02-30", "02-31", "04-31", "06-31", "09-31", "11-31", "13-05", "00-12", "07-32")
_UNKNOWN_EVENTS = ("update", "amendment", "merge", "registered", "")


@dataclass(frozen=True, slots=True)
class BadLine:
    """The text of a bad line and whether a reader can still find its record_id."""

    text: str
    kind: str
    keeps_record_id: bool


def bad_line(rng: random.Random, kind: str, record: Record, roles: FieldRoles) -> BadLine:
    """`record` spoilt in the way `kind` names (the record dict is consumed)."""
    if kind == "invalid_json":
        text = json.dumps(record)
        return BadLine(text[: rng.randrange(1, len(text) - 1)], kind, False)
    if kind == "missing_record_id":
        if rng.random() < 0.5:
            del record["record_id"]
        else:
            record["record_id"] = rng.choice(("", None))
        return BadLine(json.dumps(record), kind, False)
    if kind == "impossible_date":
        dates = [name for name in roles.dates if record.get(name)] or [roles.date_of_birth]
        name = rng.choice(dates)
        year = (record.get(name) or "2008")[:4]
        record[name] = f"{year}-{rng.choice(_IMPOSSIBLE_DAYS)}"
    elif kind == "wrong_type":
        name = rng.choice([n for n in record if n not in ("record_id", "event", "event_time")])
        value = record[name]
        record[name] = _wrong_type(rng, value)  # type: ignore[assignment]
    elif kind == "unknown_event":
        record["event"] = rng.choice(_UNKNOWN_EVENTS)
    else:
        raise ValueError(f"unknown bad-line kind {kind!r}")
    return BadLine(json.dumps(record), kind, True)


def _wrong_type(rng: random.Random, value: str | None) -> object:
    """A number, list, boolean or object where the contract wants a string or null."""
    if value and value.isdigit() and rng.random() < 0.7:
        return int(value)
    return rng.choice(([value], 0, True, {"value": value}, 1.5))
