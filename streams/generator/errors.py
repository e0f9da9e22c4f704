"""Realistic errors injected into clean feed records, each kind at its feed's configured rate."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable

from streams.generator.config import FeedErrorRates
from streams.generator.feeds import Record
from streams.generator.population import Child
from streams.generator.roles import FieldRoles
from streams.names import DIMINUTIVES

_KEYBOARD_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_NEIGHBOURS: dict[str, str] = {}
for _row_index, _row in enumerate(_KEYBOARD_ROWS):
    for _i, _key in enumerate(_row):
        _near = _row[max(0, _i - 1)] + _row[_i + 1 : _i + 2]
        for _other in _KEYBOARD_ROWS[max(0, _row_index - 1) : _row_index + 2]:
            if _other is not _row:
                _near += _other[max(0, _i - 1) : _i + 1]
        _NEIGHBOURS[_key] = _near.replace(_key, "")
_OCR_CONFUSIONS = (
    ("rn", "m"), ("m", "rn"), ("cl", "d"), ("d", "cl"), ("li", "h"), ("vv", "w"), ("I", "L"),
    ("l", "1"), ("O", "Q"), ("o", "c"), ("e", "c"), ("a", "o"), ("h", "b"), ("u", "v"), ("n", "h"),
)
_POSTCODE_OCR = {"0": "O", "O": "0", "1": "I", "I": "1", "5": "S", "S": "5", "8": "B", "B": "8"}
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

Injection = Callable[[random.Random, Record, FieldRoles, Child], bool]


class ErrorInjector:
    """Applies each error kind to a record with its rate and counts what it applied."""

    def __init__(self, rng: random.Random, rates: FeedErrorRates, roles: FieldRoles) -> None:
        self.rng = rng
        self.roles = roles
        self._active = [(kind, rates.rate(kind), _INJECTIONS[kind]) for kind in _ORDER
                        if rates.rate(kind) > 0]
        self.counts: dict[str, int] = {kind: 0 for kind, _, _ in self._active}

    def inject(self, record: Record, child: Child) -> None:
        """Mutates `record` in place with the errors that fire for it."""
        rng = self.rng
        for kind, rate, injection in self._active:
            if rng.random() < rate and injection(rng, record, self.roles, child):
                self.counts[kind] += 1


def _nickname(rng: random.Random, record: Record, roles: FieldRoles, child: Child) -> bool:
    value = record.get(roles.forenames)
    if not value:
        return False
    first, _, rest = value.partition(" ")
    forms = DIMINUTIVES.get(first.upper())
    if not forms:
        return False
    nickname = rng.choice(forms)
    nickname = nickname if first.isupper() else nickname.title()
    record[roles.forenames] = f"{nickname} {rest}" if rest else nickname
    return True


def _name_swap(rng: random.Random, record: Record, roles: FieldRoles, child: Child) -> bool:
    if not child.middle_names:
        return False
    first_middle = child.middle_names.partition(" ")[0]
    if roles.middle_names:
        record[roles.forenames], record[roles.middle_names] = first_middle, child.first_name
    elif roles.forenames == "legal_forename":
        record[roles.forenames] = first_middle
    else:
        middle_rest = child.middle_names.partition(" ")[2]
        record[roles.forenames] = " ".join(
            part for part in (first_middle, child.first_name, middle_rest) if part)
    return True


def _surname_part(rng: random.Random, record: Record, roles: FieldRoles, child: Child) -> bool:
    value = record.get(roles.surname)
    if not value:
        return False
    parts = value.replace("-", " ").split()
    if len(parts) < 2:
        return False
    record[roles.surname] = rng.choice(parts)
    return True


def _stale_address(rng: random.Random, record: Record, roles: FieldRoles, child: Child) -> bool:
    previous = child.household.previous_address
    if previous is None:
        return False
    stale = {"address_line1": previous.line1, "address_line2": previous.line2,
             "town": previous.town, "postcode": previous.postcode}
    for name in roles.address:
        record[name] = stale[name]
    return True


def _typo_keyboard(rng: random.Random, record: Record, roles: FieldRoles, child: Child) -> bool:
    name = _pick_name(rng, record, roles)
    if name is None:
        return False
    value = record[name]
    assert value is not None
    i = rng.randrange(len(value))
    operation = rng.randrange(4)
    if operation == 0:  # neighbouring key
        near = _NEIGHBOURS.get(value[i].lower())
        if not near:
            return False
        replacement = rng.choice(near)
        value = value[:i] + (replacement.upper() if value[i].isupper() else replacement) \
            + value[i + 1 :]
    elif operation == 1 and len(value) > 2:  # dropped letter
        value = value[:i] + value[i + 1 :]
    elif operation == 2:  # doubled letter
        value = value[: i + 1] + value[i:]
    elif i + 1 < len(value) and value[i] != value[i + 1]:  # swapped letters
        value = value[:i] + value[i + 1] + value[i] + value[i + 2 :]
    else:
        return False
    record[name] = value
    return True


def _typo_ocr(rng: random.Random, record: Record, roles: FieldRoles, child: Child) -> bool:
    name = _pick_name(rng, record, roles)
    if name is None:
        return False
    value = record[name]
    assert value is not None
    start = rng.randrange(len(_OCR_CONFUSIONS))
    for offset in range(len(_OCR_CONFUSIONS)):
        seen, read = _OCR_CONFUSIONS[(start + offset) % len(_OCR_CONFUSIONS)]
        for text, replacement in ((seen, read), (seen.upper(), read.upper())):
            if text in value:
                record[name] = value.replace(text, replacement, 1)
                return True
    return False


def _dob_typo(rng: random.Random, record: Record, roles: FieldRoles, child: Child) -> bool:
    value = record.get(roles.date_of_birth)
    if not value:
        return False
    for _ in range(6):
        position = rng.choice((9, 9, 9, 8, 6, 6, 5, 3, 3, 2))  # day digits most often
        candidate = value[:position] + str(rng.randrange(10)) + value[position + 1 :]
        if candidate != value and _is_date(candidate):
            record[roles.date_of_birth] = candidate
            return True
    return False


def _dob_transposed(rng: random.Random, record: Record, roles: FieldRoles, child: Child) -> bool:
    value = record.get(roles.date_of_birth)
    if not value:
        return False
    year, month, day = value.split("-")
    if int(day) > 12 or day == month:
        return False
    record[roles.date_of_birth] = f"{year}-{day}-{month}"
    return True


def _postcode_typo(rng: random.Random, record: Record, roles: FieldRoles, child: Child) -> bool:
    value = record.get(roles.postcode)
    if not value:
        return False
    operation = rng.randrange(3)
    if operation == 0 and " " in value:
        record[roles.postcode] = value.replace(" ", "")
        return True
    positions = [i for i, c in enumerate(value) if c != " "]
    i = rng.choice(positions)
    if operation == 1 and value[i] in _POSTCODE_OCR:
        replacement = _POSTCODE_OCR[value[i]]
    elif value[i].isdigit():
        replacement = str((int(value[i]) + rng.randint(1, 9)) % 10)
    else:
        replacement = rng.choice(_LETTERS.replace(value[i], ""))
    record[roles.postcode] = value[:i] + replacement + value[i + 1 :]
    return True


def _nhs_number_typo(rng: random.Random, record: Record, roles: FieldRoles, child: Child) -> bool:
    value = record.get(roles.nhs_number) if roles.nhs_number else None
    if not value:
        return False
    i = rng.randrange(9)
    if rng.random() < 0.5 and value[i] != value[i + 1]:
        value = value[:i] + value[i + 1] + value[i] + value[i + 2 :]
    else:
        value = value[:i] + str((int(value[i]) + rng.randint(1, 9)) % 10) + value[i + 1 :]
    record[roles.nhs_number] = value  # type: ignore[index]
    return True


def _unknown_sex(rng: random.Random, record: Record, roles: FieldRoles, child: Child) -> bool:
    record[roles.sex] = rng.choice(roles.unknown_sex)
    return True


def _missing_field(rng: random.Random, record: Record, roles: FieldRoles, child: Child) -> bool:
    candidates = [name for name, value in record.items()
                  if value is not None and name not in roles.keys]
    if not candidates:
        return False
    record[rng.choice(candidates)] = None
    return True


def _case_noise(rng: random.Random, record: Record, roles: FieldRoles, child: Child) -> bool:
    change = rng.choice((str.lower, str.upper, str.title, _random_case))
    for name in roles.names:
        value = record.get(name)
        if value:
            record[name] = change(value)
    return True


def _whitespace_noise(rng: random.Random, record: Record, roles: FieldRoles, child: Child) -> bool:
    names = [n for n in (*roles.names, "address_line1") if record.get(n)]
    if not names:
        return False
    name = rng.choice(names)
    value = record[name]
    assert value is not None
    choice = rng.randrange(3)
    if choice == 2 and " " in value:
        record[name] = value.replace(" ", "  ", 1)
    elif choice == 1:
        record[name] = value + rng.choice((" ", "  ", "\t"))
    else:
        record[name] = " " + value
    return True


def _pick_name(rng: random.Random, record: Record, roles: FieldRoles) -> str | None:
    names = [name for name in roles.names if record.get(name)]
    return rng.choice(names) if names else None


def _random_case(value: str) -> str:
    # deterministic "random" case: alternate by character position
    return "".join(c.upper() if i % 2 else c.lower() for i, c in enumerate(value))


def _is_date(text: str) -> bool:
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return True


_INJECTIONS: dict[str, Injection] = {
    "nickname": _nickname,
    "name_swap": _name_swap,
    "surname_part": _surname_part,
    "stale_address": _stale_address,
    "typo_keyboard": _typo_keyboard,
    "typo_ocr": _typo_ocr,
    "dob_typo": _dob_typo,
    "dob_transposed": _dob_transposed,
    "postcode_typo": _postcode_typo,
    "nhs_number_typo": _nhs_number_typo,
    "unknown_sex": _unknown_sex,
    "missing_field": _missing_field,
    "case_noise": _case_noise,
    "whitespace_noise": _whitespace_noise,
}
_ORDER: tuple[str, ...] = tuple(_INJECTIONS)
