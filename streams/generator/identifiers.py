"""Identifier formats of the four sources: NHS number, UPN, NINO and the feeds' own references."""

from __future__ import annotations

import random

_NHS_WEIGHTS = (10, 9, 8, 7, 6, 5, 4, 3, 2)
_UPN_WEIGHTS = tuple(range(2, 14))
_UPN_CHECK_LETTERS = "ABCDEFGHJKLMNPQRTUVWXYZ"
_NINO_FIRST = "ABCEGHJKLMNOPRSTWXYZ"
_NINO_SECOND = "ABCEGHJKLMNPRSTWXYZ"
_NHS_BASE = 400_000_000
_NHS_STRIDE = 7_919  # coprime with the range below, so consecutive numbers look unrelated
_NHS_RANGE = 300_000_000


def nhs_check_digit(first_nine: str) -> int | None:
    """The modulus-11 check digit of nine digits, or None when no valid number exists."""
    remainder = sum(int(d) * w for d, w in zip(first_nine, _NHS_WEIGHTS, strict=True)) % 11
    check = 11 - remainder
    if check == 11:
        return 0
    return None if check == 10 else check


class NhsNumbers:
    """Issues distinct ten-digit NHS numbers with a valid check digit, in a fixed order."""

    def __init__(self) -> None:
        self._counter = 0

    def issue(self) -> str:
        while True:
            self._counter += 1
            body = str(_NHS_BASE + (self._counter * _NHS_STRIDE) % _NHS_RANGE)
            check = nhs_check_digit(body)
            if check is not None:
                return f"{body}{check}"


def upn(la_code: str, serial: int) -> str:
    """A 13-character unique pupil number: check letter, 3-digit LA code, 9-digit serial."""
    body = f"{la_code}{serial:09d}"
    total = sum(int(d) * w for d, w in zip(body, _UPN_WEIGHTS, strict=True))
    return _UPN_CHECK_LETTERS[total % 23] + body


def nino(rng: random.Random) -> str:
    """A National Insurance number of the valid shape (`AB123456C`)."""
    return (
        rng.choice(_NINO_FIRST)
        + rng.choice(_NINO_SECOND)
        + f"{rng.randrange(1_000_000):06d}"
        + rng.choice("ABCD")
    )
