"""The canonical update: what every feed adapter produces and everything downstream consumes.

Every field except the four identity fields is a normalised string or None, so a batch of updates
is one Arrow table of string columns (`UPDATE_SCHEMA`). Normalisation rules (done by the adapters):

- names: upper case, ASCII letters, single spaces, hyphens and apostrophes kept (`"O'NEIL-SMITH"`);
  `first_name` is the first forename, `middle_names` the rest (space separated);
  `first_name_std` is `first_name` mapped through the diminutive table (ALFIE -> ALFRED);
- `sex`: `M`, `F` or None (unknown / not specified);
- dates: `YYYY-MM-DD`; `event_time`: UTC `YYYY-MM-DDTHH:MM:SSZ`;
- `postcode`: upper case, outward and inward code separated by one space (`SW1A 1AA`) when it has
  the shape of a UK postcode, otherwise upper case with spaces removed (kept as evidence);
- `nhs_number`: ten digits, spaces removed (an invalid check digit is kept: evidence, not error).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, make_dataclass
from operator import attrgetter

import pyarrow as pa

FEEDS: tuple[str, ...] = ("gro", "dwp", "nhs", "census")

EVENTS: dict[str, tuple[str, ...]] = {
    "gro": ("birth", "death"),
    "dwp": ("new_claim", "change_of_address", "change_of_name", "claim_ended"),
    "nhs": ("registration", "change", "death"),
    "census": ("census",),
}


class BadRecord(ValueError):
    """A feed line that cannot become an update; its message is the dead-letter reason."""


@dataclass(frozen=True, slots=True)
class Update:
    """One good feed record in canonical form."""

    feed: str
    record_id: str
    event: str
    event_time: str
    source_key: str | None = None
    first_name: str | None = None
    middle_names: str | None = None
    first_name_std: str | None = None
    surname: str | None = None
    preferred_first_name: str | None = None
    preferred_surname: str | None = None
    former_surname: str | None = None
    sex: str | None = None
    date_of_birth: str | None = None
    date_of_death: str | None = None
    address_line1: str | None = None
    address_line2: str | None = None
    town: str | None = None
    postcode: str | None = None
    nhs_number: str | None = None
    upn: str | None = None
    parent_forenames: str | None = None
    parent_surname: str | None = None
    claimant_nino: str | None = None
    school_urn: str | None = None
    gp_practice_code: str | None = None

    @property
    def unique_id(self) -> str:
        """The record's id across feeds, as the linkage model and the master store know it."""
        return f"{self.feed}:{self.record_id}"

    def as_row(self) -> dict[str, str | None]:
        return asdict(self)


UPDATE_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Update))
UPDATE_SCHEMA = pa.schema([(name, pa.string()) for name in UPDATE_COLUMNS])


# The mutable form of an Update that an adapter fills in field by field (every field None until
# set); `finished` makes it the Update. A frozen dataclass's `__init__` sets each of its 26 fields
# through `object.__setattr__` and matches its keyword arguments by name, ~4 us an update, a third
# of parsing a feed line; a draft with Update's very slots is filled by plain attribute stores.
UpdateDraft = make_dataclass(
    "UpdateDraft", [(f.name, f.type, field(default=None)) for f in fields(Update)], slots=True
)


def finished(draft: UpdateDraft) -> Update:  # type: ignore[valid-type]
    """The draft, now an Update: the very object `Update(**values)` would have built. Python
    refuses the change of class, loudly, if the two layouts ever differ."""
    draft.__class__ = Update
    return draft


def updates_to_arrow(updates: list[Update]) -> pa.Table:
    """A batch of updates as one Arrow table with `UPDATE_SCHEMA` (column order fixed)."""
    # Arrow converts the rows (tuples) itself, faster than building a Python list per column.
    rows = pa.array(list(map(_update_values, updates)), type=_UPDATE_ROW)
    return pa.Table.from_struct_array(rows)


_update_values = attrgetter(*UPDATE_COLUMNS)
_UPDATE_ROW = pa.struct(UPDATE_SCHEMA)
