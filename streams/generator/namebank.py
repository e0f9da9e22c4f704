"""Name frequencies: UK first names by sex and surnames, drawn with Zipf-like weights by rank."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

_DATA = Path(__file__).resolve().parent.parent / "data"
_FIRST_NAME_ZIPF = 0.6
_SURNAME_ZIPF = 0.75
# Surnames outside the common list: common English stems and endings, giving a long rare tail.
_TAIL_STEMS = (
    "Ash", "Black", "Brad", "Brook", "Bur", "Cald", "Clif", "Cran", "Dal", "Dun", "East", "Ell",
    "Fair", "Farn", "Green", "Hal", "Hart", "Hay", "Hol", "Kirk", "Lang", "Lind", "Mar", "Mid",
    "Mor", "Nor", "Oak", "Pem", "Red", "Ren", "Rock", "Roth", "Sal", "Shel", "Stan", "Thorn",
    "Wal", "War", "Wel", "Whit", "Win", "Wood",
)
_TAIL_ENDINGS = (
    "ford", "ley", "ton", "worth", "wood", "field", "by", "ham", "well", "bury", "brook", "combe",
    "dale", "er", "hurst", "ington", "more", "stone", "wick", "croft", "ridge", "land", "shaw",
)
_TAIL_SHARE = 0.3  # children whose family surname is a rare one


def _read_names(filename: str) -> tuple[str, ...]:
    """Distinct names of a data file in rank order (comment lines and repeats skipped)."""
    lines = (_DATA / filename).read_text(encoding="utf-8").splitlines()
    names = (line.strip() for line in lines if line.strip() and not line.startswith("#"))
    return tuple(dict.fromkeys(names))


def _zipf_cumulative(count: int, exponent: float) -> list[float]:
    return list(itertools.accumulate(1.0 / (rank**exponent) for rank in range(1, count + 1)))


class NameBank:
    """Draws first names by sex and surnames with realistic collisions."""

    def __init__(self) -> None:
        self.first_names: dict[str, tuple[str, ...]] = {
            "M": _read_names("first_names_boys.txt"),
            "F": _read_names("first_names_girls.txt"),
        }
        self._first_cumulative = {
            sex: _zipf_cumulative(len(names), _FIRST_NAME_ZIPF)
            for sex, names in self.first_names.items()
        }
        self.surnames = _read_names("surnames.txt")
        self._surname_cumulative = _zipf_cumulative(len(self.surnames), _SURNAME_ZIPF)
        self.rare_surnames = tuple(s + e for s, e in itertools.product(_TAIL_STEMS, _TAIL_ENDINGS))

    def first_name(self, rng: random.Random, sex: str, avoid: tuple[str, ...] = ()) -> str:
        """A first name for sex `M`/`F`, different from the names in `avoid` (siblings, twins)."""
        names, cumulative = self.first_names[sex], self._first_cumulative[sex]
        while True:
            name = rng.choices(names, cum_weights=cumulative)[0]
            if name not in avoid:
                return name

    def surname(self, rng: random.Random) -> str:
        if rng.random() < _TAIL_SHARE:
            return rng.choice(self.rare_surnames)
        return rng.choices(self.surnames, cum_weights=self._surname_cumulative)[0]
