"""Normalisation of raw feed values into the canonical forms described in `streams.canonical`.

Every function takes one raw string (or None) and returns the canonical string, or None when
nothing meaningful is left. They never raise on odd input: noise is kept as evidence where it
can be, dropped where it cannot (control characters, letters with no ASCII form).
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata

_UK_POSTCODE = re.compile(r"[A-Z]{1,2}[0-9][A-Z0-9]?[0-9][A-Z]{2}")
_CANONICAL_UK_POSTCODE = re.compile(r"[A-Z]{1,2}[0-9][A-Z0-9]? [0-9][A-Z]{2}")
_CANONICAL_NAME = re.compile(r"[A-Z]+(?:[-' ][A-Z]+)*")
_ASCII_DIGITS = frozenset("0123456789")

# Letters that NFKD does not decompose to ASCII (upper case; `str.upper` already maps ß to SS).
_LETTERS_WITHOUT_DECOMPOSITION = str.maketrans(
    {"Æ": "AE", "Ø": "O", "Œ": "OE", "Ł": "L", "Đ": "D", "Ð": "D", "Þ": "TH", "Ħ": "H", "İ": "I"}
)
# Typographic apostrophes and dashes that NFKD leaves alone.
_PUNCTUATION_VARIANTS = str.maketrans({"’": "'", "‘": "'", "´": "'", "‐": "-", "–": "-"})
_NAME_SEPARATORS = " \t\n\r\x0b\x0c.,_/"
# After ASCII folding: separators become spaces, a backtick an apostrophe; letters, hyphen and
# apostrophe stay; everything else (digits, symbols, control characters) is dropped.
_NAME_CHARACTERS = str.maketrans(
    {chr(c): None for c in range(128) if not chr(c).isalpha() and chr(c) not in "-'"}
    | {separator: " " for separator in _NAME_SEPARATORS}
    | {"`": "'"}
)


def name(raw: str | None) -> str | None:
    """A person's name in canonical form: upper-case ASCII letters, hyphens, apostrophes and
    single spaces.

    >>> name("  Zoë  o’Neil-smith ")
    "ZOE O'NEIL-SMITH"
    >>> name("Ji-Hoon ( 2 )")
    'JI-HOON'
    >>> name("Łukasz Strauß")
    'LUKASZ STRAUSS'
    >>> name("Smith - Jones")
    'SMITH-JONES'
    >>> name("Robert'); DROP TABLE children;--")
    'ROBERT DROP TABLE CHILDREN'
    >>> name("123") is None
    True
    """
    if raw is None:
        return None
    upper = raw.upper()
    if not upper.isascii():
        upper = _fold_to_ascii(upper).upper()
    if upper.isalpha() or _CANONICAL_NAME.fullmatch(upper):
        return upper
    spaced = " ".join(upper.translate(_NAME_CHARACTERS).split())
    hyphenated = spaced.replace(" -", "-").replace("- ", "-")
    words = (word.strip("-'") for word in hyphenated.split(" "))
    return " ".join(word for word in words if word) or None


def split_forenames(raw: str | None) -> tuple[str | None, str | None]:
    """The first forename and the remaining ones (space separated), both in canonical form.

    >>> split_forenames("mary-jane  Louise ann")
    ('MARY-JANE', 'LOUISE ANN')
    >>> split_forenames("Oliver")
    ('OLIVER', None)
    >>> split_forenames(None)
    (None, None)
    """
    forenames = name(raw)
    if forenames is None:
        return None, None
    first, _, middle = forenames.partition(" ")
    return first, middle or None


def postcode(raw: str | None) -> str | None:
    """A postcode: upper case, one space before the inward code when it has the UK shape,
    otherwise upper case with whitespace removed (kept as evidence).

    >>> postcode("sw1a1aa")
    'SW1A 1AA'
    >>> postcode(" m1  1ae ")
    'M1 1AE'
    >>> postcode("not a postcode")
    'NOTAPOSTCODE'
    >>> postcode("   ") is None
    True
    """
    if raw is not None and _CANONICAL_UK_POSTCODE.fullmatch(raw):
        return raw
    compact = code(raw)
    if compact is not None and _UK_POSTCODE.fullmatch(compact):
        return f"{compact[:-3]} {compact[-3:]}"
    return compact


def nhs_number(raw: str | None) -> str | None:
    """An NHS number: its ten digits when it has ten (the check digit is not checked: a wrong one
    is evidence), otherwise the value with surrounding whitespace stripped.

    >>> nhs_number("943 476 5919")
    '9434765919'
    >>> nhs_number("943-476-591")
    '943-476-591'
    >>> nhs_number(" ") is None
    True
    """
    if raw is None:
        return None
    if len(raw) == 10 and raw.isascii() and raw.isdigit():
        return raw
    digits = "".join(c for c in raw if c in _ASCII_DIGITS)
    if len(digits) == 10:
        return digits
    return printable(raw.strip()) or None


def code(raw: str | None) -> str | None:
    """An identifier or code (UPN, URN, NINO, practice code, reference): upper case, whitespace
    and control characters removed.

    >>> code(" ab 12 34 56 c ")
    'AB123456C'
    >>> code("") is None
    True
    """
    if raw is None:
        return None
    if raw.isalnum() and raw.isascii():
        return raw.upper()
    compact = "".join(raw.upper().split())
    return printable(compact) or None


def text(raw: str | None) -> str | None:
    """Free text such as an address line or town: upper case, single spaces, no control
    characters.

    >>> text("  12  High st\\tFlat 2 ")
    '12 HIGH ST FLAT 2'
    >>> text("A \\x00 B")
    'A B'
    >>> text(" \\n ") is None
    True
    """
    if raw is None:
        return None
    joined = " ".join(raw.upper().split())
    if not joined.isprintable():
        joined = " ".join(word for word in map(printable, joined.split(" ")) if word)
    return joined or None


def sex(raw: str | None, codes: dict[str, str]) -> str | None:
    """`M`, `F` or None: the source's own code looked up in `codes` (unknown codes give None).

    >>> sex(" f ", {"M": "M", "F": "F"})
    'F'
    >>> sex("U", {"M": "M", "F": "F"}) is None
    True
    """
    if raw is None:
        return None
    return codes.get(raw.strip().upper())


def calendar_date(raw: str) -> str | None:
    """The date when `raw` (surrounding whitespace ignored) is a real calendar date written
    `YYYY-MM-DD`; None when it is blank. Raises ValueError otherwise.

    >>> calendar_date(" 2009-02-28 ")
    '2009-02-28'
    >>> calendar_date("2009-02-30")
    Traceback (most recent call last):
    ...
    ValueError: day is out of range for month
    """
    value = raw.strip()
    if not value:
        return None
    if len(value) != 10 or value[4] != "-" or value[7] != "-" or not value.isascii():
        raise ValueError("not YYYY-MM-DD")
    dt.date.fromisoformat(value)
    return value


def utc_timestamp(raw: str) -> str:
    """An ISO 8601 timestamp with `Z` or an offset, as UTC `YYYY-MM-DDTHH:MM:SSZ` (fractions of
    a second dropped). Raises ValueError when it is not one.

    >>> utc_timestamp("2009-03-01T10:15:00+01:00")
    '2009-03-01T09:15:00Z'
    >>> utc_timestamp(" 2009-03-01 10:15:00.250Z ")
    '2009-03-01T10:15:00Z'
    >>> utc_timestamp("2009-03-01T10:15:00")
    Traceback (most recent call last):
    ...
    ValueError: no Z or UTC offset
    """
    value = raw.strip()
    moment = dt.datetime.fromisoformat(value)
    if _is_canonical_timestamp(value):
        return value
    if moment.tzinfo is None:
        raise ValueError("no Z or UTC offset")
    try:
        moment = moment.astimezone(dt.UTC)
    except OverflowError as error:
        raise ValueError("out of range in UTC") from error
    return moment.replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


def printable(value: str) -> str:
    """`value` without control, format, surrogate or other non-printable characters.

    >>> printable("AB\\x00C\\u200b")
    'ABC'
    """
    if value.isprintable():
        return value
    return "".join(c for c in value if c.isprintable())


def _is_canonical_timestamp(value: str) -> bool:
    """Whether a value `datetime.fromisoformat` accepted is already `YYYY-MM-DDTHH:MM:SSZ`."""
    return (
        len(value) == 20
        and value[19] == "Z"
        and value[10] == "T"
        and value[4] == value[7] == "-"
        and value[13] == value[16] == ":"
    )


def _fold_to_ascii(upper: str) -> str:
    """Upper-case text with accents and ligatures folded to ASCII; letters with no ASCII form
    (Cyrillic, CJK, …) dropped."""
    spelled = upper.translate(_LETTERS_WITHOUT_DECOMPOSITION).translate(_PUNCTUATION_VARIANTS)
    decomposed = unicodedata.normalize("NFKD", spelled)
    return decomposed.encode("ascii", "ignore").decode("ascii")
