"""Declared feeds ("bring your own data"): any person dataset (CSV, JSON Lines or Parquet) described
by a small TOML declaration becomes a feed folder the engine streams like the national feeds.

`import_declared_feed` writes `<feeds>/<name>/<stem>.jsonl` (the feed contract, with canonical field
names and the single event `record`) plus a copy of the declaration as `<feeds>/<name>/feed.toml`;
`parse_declared_line` is the adapter for those lines; `declared_feeds` lists a folder's declared
feeds. The declaration format is documented in docs/own-data.md.

A date that is not a real calendar date is evidence kept, not a record thrown away: the record is
written with that field unknown (its value as given under `<field>_as_given`, which the adapter
ignores) and counted, unless the declaration lists the field in `required`; then the raw value is
written and the engine dead-letters the record, as it does for the national feeds.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import re
import shutil
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from streams import normalise as norm
from streams.adapters import (
    Record,
    fill_address,
    fill_names,
    first_and_middle_names,
    parse_record_line,
)
from streams.canonical import FEEDS, UPDATE_COLUMNS, BadRecord, Update, UpdateDraft

DECLARATION_FILE = "feed.toml"
DECLARED_EVENTS: tuple[str, ...] = ("record",)
DATE_FIELDS: tuple[str, ...] = ("date_of_birth", "date_of_death")
FORMATS: tuple[str, ...] = ("csv", "jsonl", "parquet")
DEFAULT_DATE_FORMAT = "%Y-%m-%d"
# The Update fields a declaration may map a column onto: all but the identity fields, the
# derived `first_name_std`, and `source_key` (declared by its own key).
CANONICAL_FIELDS: tuple[str, ...] = tuple(
    name for name in UPDATE_COLUMNS
    if name not in ("feed", "record_id", "event", "event_time", "source_key", "first_name_std")
)
# A date field that did not parse keeps its value as given under this suffix (not read by the
# adapter: evidence for people, not for the model).
AS_GIVEN_SUFFIX = "_as_given"
TRUTH_HEADER = ("feed", "record_id", "person_id", "bad_kind")
# bad_kind of a truth row whose feed line parse_declared_line rejects (evaluation skips it).
REJECTED = "rejected"

# The governance rule for a registrable source's name (engine/governance/sources.py).
_FEED_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
_CANONICAL_SEX = {"M": "M", "F": "F"}
_FEED_KEYS = {
    "name", "path", "format", "record_id", "source_key", "event_time", "date_format", "truth",
    "encoding", "delimiter", "required",
}
_TABLES = {"feed", "columns", "sex_codes"}
_MAX_EXAMPLES = 3
_CSV_EXTRA_CELLS = "csv_extra_cells"


class DeclarationError(ValueError):
    """A declaration that cannot be imported; its message is the one-line reason."""


@dataclass(frozen=True)
class Declaration:
    """A feed declaration: where the dataset is and how its columns map onto canonical fields."""

    name: str
    path: Path
    format: str
    record_id: str
    columns: dict[str, str]  # canonical field -> source column
    source_key: str | None = None
    event_time: str | None = None
    date_format: str = DEFAULT_DATE_FORMAT
    truth: str | None = None
    sex_codes: dict[str, str] = field(default_factory=lambda: dict(_CANONICAL_SEX))
    encoding: str = "utf-8-sig"
    delimiter: str = ","
    # date fields whose unparseable value makes the record bad (dead letter)
    required: tuple[str, ...] = ()

    @classmethod
    def from_toml(cls, declaration: Path) -> Declaration:
        """The checked declaration of a TOML file; raises DeclarationError(reason)."""
        tables = _toml_tables(declaration)
        feed = tables["feed"]
        check_known_keys(feed, _FEED_KEYS, "[feed]")
        for key in ("name", "path", "format", "record_id"):
            if key not in feed:
                raise DeclarationError(f"[feed] has no {key!r}")
        columns = _columns(tables.get("columns"))
        return cls(
            name=_feed_name(feed["name"]),
            path=declaration.parent / feed["path"],
            format=_one_of(feed["format"], FORMATS, "format"),
            record_id=feed["record_id"],
            columns=columns,
            source_key=feed.get("source_key"),
            event_time=feed.get("event_time"),
            date_format=_date_format(feed.get("date_format", DEFAULT_DATE_FORMAT)),
            truth=feed.get("truth"),
            sex_codes=_sex_codes(tables.get("sex_codes")),
            encoding=feed.get("encoding", "utf-8-sig"),
            delimiter=feed.get("delimiter", ","),
            required=_required(feed.get("required", []), columns),
        )

    def source_columns(self) -> set[str]:
        """Every column of the dataset the declaration reads."""
        named = (self.record_id, self.source_key, self.event_time, self.truth)
        return {column for column in named if column} | set(self.columns.values())


@dataclass(frozen=True)
class ImportSummary:
    """What `import_declared_feed` wrote: the feed file, its records, and those the engine will
    refuse (with up to three example reasons), plus the truth rows written."""

    feed: str
    feed_file: Path
    records: int
    rejected: int
    duplicate_record_ids: int
    truth_rows: int
    rejected_examples: tuple[str, ...] = ()
    # per date field, records kept with that field unknown because it is not a real date
    unparsed: dict[str, int] = field(default_factory=dict)
    unparsed_examples: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "feed_file": str(self.feed_file)}


def import_declared_feed(
    declaration: Path, feeds_dir: Path, truth_out: Path | None = None
) -> ImportSummary:
    """Convert the declared dataset into `<feeds_dir>/<name>/<stem>.jsonl` (one line per source
    record, nothing dropped: a record the engine must refuse keeps its raw value so the engine
    dead-letters it with the reason), copy the declaration to `<feeds_dir>/<name>/feed.toml`, and,
    when the declaration names a `truth` column and `truth_out` is given, replace this feed's rows
    of `truth_out` (feed,record_id,person_id,bad_kind; other feeds' rows are kept).

    Raises DeclarationError(reason) for a bad declaration or an unreadable dataset.
    """
    spec = Declaration.from_toml(declaration)
    if not spec.path.is_file():
        raise DeclarationError(f"data file {spec.path} does not exist")
    _check_columns_present(spec, _dataset_columns(spec))
    folder = feeds_dir / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    feed_file = folder / f"{spec.path.stem}.jsonl"
    written = _write_feed_file(spec, feed_file)
    shutil.copyfile(declaration, folder / DECLARATION_FILE)
    truth_rows = 0
    if spec.truth and truth_out is not None:
        truth_rows = _write_truth(truth_out, spec.name, written.truth)
    return ImportSummary(
        feed=spec.name, feed_file=feed_file, records=written.records,
        rejected=written.rejected, duplicate_record_ids=written.duplicates,
        truth_rows=truth_rows, rejected_examples=tuple(written.examples),
        unparsed=dict(written.unparsed), unparsed_examples=tuple(written.unparsed_examples),
    )


def parse_declared_line(feed: str, line: str) -> Update:
    """Parse one line of a declared feed's file into a canonical Update; raise BadRecord(reason)
    if bad. The line follows the feed contract with canonical field names and event `record`;
    values are normalised exactly as the national feeds' adapters do."""
    return parse_record_line(feed, line, DECLARED_EVENTS, DATE_FIELDS, _declared_fields)


def declared_feeds(feeds_dir: Path) -> tuple[str, ...]:
    """Names (sorted) of the sub-folders of `feeds_dir` that hold a `feed.toml` declaration."""
    if not feeds_dir.is_dir():
        return ()
    return tuple(
        sorted(
            folder.name for folder in feeds_dir.iterdir()
            if folder.is_dir() and (folder / DECLARATION_FILE).is_file()
        )
    )


# ---------------------------------------------------------------- the adapter


def _declared_fields(record: Record, update: UpdateDraft) -> None:
    """The canonical fields of a declared feed's line; `first_name` may hold middle names too."""
    get = record.get
    forenames = first_and_middle_names(get("first_name"), get("middle_names"))
    update.source_key = norm.code(get("source_key"))
    fill_names(update, *forenames, get("surname"))
    update.preferred_first_name, _ = norm.split_forenames(get("preferred_first_name"))
    update.preferred_surname = norm.name(get("preferred_surname"))
    update.former_surname = norm.name(get("former_surname"))
    update.sex = norm.sex(get("sex"), _CANONICAL_SEX)
    update.date_of_birth = get("date_of_birth")
    update.date_of_death = get("date_of_death")
    fill_address(update, record)
    update.nhs_number = norm.nhs_number(get("nhs_number"))
    update.upn = norm.code(get("upn"))
    update.parent_forenames = norm.name(get("parent_forenames"))
    update.parent_surname = norm.name(get("parent_surname"))
    update.claimant_nino = norm.code(get("claimant_nino"))
    update.school_urn = norm.code(get("school_urn"))
    update.gp_practice_code = norm.code(get("gp_practice_code"))


# ---------------------------------------------------------------- the declaration


def _toml_tables(declaration: Path) -> dict[str, dict[str, Any]]:
    """The declaration's tables, checked to be the known ones with a [feed]."""
    if not declaration.is_file():
        raise DeclarationError(f"declaration {declaration} does not exist")
    try:
        tables = tomllib.loads(declaration.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise DeclarationError(f"{declaration} is not valid TOML: {error}") from None
    check_known_keys(tables, _TABLES, "the declaration")
    if not isinstance(tables.get("feed"), dict):
        raise DeclarationError("the declaration has no [feed] table")
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise DeclarationError(f"{name!r} must be a [{name}] table")
        for key, value in table.items():
            if (name, key) == ("feed", "required"):
                continue  # a list of fields, checked by _required
            if not isinstance(value, str):
                raise DeclarationError(f"[{name}] {key} must be a string, not {value!r}")
    return tables


def check_known_keys(
    table: dict[str, Any], known: set[str], where: str,
    error: type[ValueError] = DeclarationError,
) -> None:
    """Raise `error` naming the first key of a configuration table not in `known`."""
    unknown = sorted(set(table) - known)
    if unknown:
        raise error(
            f"unknown key {unknown[0]!r} in {where} (known: {', '.join(sorted(known))})"
        )


def _feed_name(name: str) -> str:
    if name in FEEDS:
        raise DeclarationError(f"feed name {name!r} is a national feed; choose another name")
    if not _FEED_NAME.fullmatch(name):
        raise DeclarationError(
            f"feed name {name!r} must be 1-32 lower-case letters, digits or underscores, "
            "starting with a letter"
        )
    return name


def _one_of(value: str, allowed: tuple[str, ...], key: str) -> str:
    if value not in allowed:
        raise DeclarationError(f"unknown {key} {value!r} (expected {' | '.join(allowed)})")
    return value


def _columns(columns: dict[str, str] | None) -> dict[str, str]:
    """The [columns] mapping, every key a canonical field."""
    if not columns:
        raise DeclarationError("the declaration maps no [columns] onto canonical fields")
    check_known_keys(columns, set(CANONICAL_FIELDS), "[columns]")
    return dict(columns)


def _required(fields: Any, columns: dict[str, str]) -> tuple[str, ...]:
    """The `required` list: mapped date fields whose unparseable value makes a record bad."""
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        raise DeclarationError(f"[feed] required must be a list of field names, not {fields!r}")
    for name in fields:
        if name not in DATE_FIELDS:
            raise DeclarationError(
                f"[feed] required names {name!r}: only date fields ({', '.join(DATE_FIELDS)}) "
                "can fail to parse"
            )
        if name not in columns:
            raise DeclarationError(f"[feed] required names {name!r}, which [columns] does not map")
    return tuple(fields)


def _date_format(date_format: str) -> str:
    """A strptime format that reads back the dates it writes (so it has a day, month and year)."""
    sample = dt.date(2001, 2, 3)
    try:
        read_back = dt.datetime.strptime(sample.strftime(date_format), date_format).date()
    except ValueError:
        read_back = None
    if read_back != sample:
        raise DeclarationError(f"date_format {date_format!r} cannot read a full date back")
    return date_format


def _sex_codes(codes: dict[str, str] | None) -> dict[str, str]:
    """Source sex code (upper case) -> M or F."""
    if codes is None:
        return dict(_CANONICAL_SEX)
    for code, sex in codes.items():
        if sex not in _CANONICAL_SEX:
            raise DeclarationError(f"[sex_codes] {code!r} must map to \"M\" or \"F\", not {sex!r}")
    return {code.strip().upper(): sex for code, sex in codes.items()}


# ---------------------------------------------------------------- reading the dataset


def _dataset_columns(spec: Declaration) -> set[str]:
    """The columns the dataset has (for JSON Lines: the keys of any of its objects)."""
    if spec.format == "parquet":
        import pyarrow.parquet as pq

        return set(_read_parquet(spec.path, pq.read_schema).names)
    if spec.format == "csv":
        with _open_text(spec) as text:
            return set(next(csv.reader(text, delimiter=spec.delimiter), []))
    return {key for row in _jsonl_rows(spec) if isinstance(row, dict) for key in row}


def _check_columns_present(spec: Declaration, present: set[str]) -> None:
    missing = sorted(spec.source_columns() - present)
    if missing:
        raise DeclarationError(f"column {missing[0]!r} is not in {spec.path.name}")


def _source_rows(spec: Declaration) -> Iterator[dict[str, Any] | str]:
    """The dataset's records in file order: a dict per record, or the raw text of a JSON Lines
    line that is not a JSON object (kept so that the engine dead-letters it)."""
    if spec.format == "csv":
        yield from _csv_rows(spec)
    elif spec.format == "jsonl":
        yield from _jsonl_rows(spec)
    else:
        yield from _parquet_rows(spec)


def _csv_rows(spec: Declaration) -> Iterator[dict[str, Any]]:
    """CSV rows by header; cells beyond the header end up under `csv_extra_cells` (a list, which
    the adapter refuses: the row's columns cannot be trusted)."""
    with _open_text(spec) as text:
        yield from csv.DictReader(text, delimiter=spec.delimiter, restkey=_CSV_EXTRA_CELLS)


def _jsonl_rows(spec: Declaration) -> Iterator[dict[str, Any] | str]:
    with _open_text(spec) as text:
        for line in text:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                row = None
            yield row if isinstance(row, dict) else line.rstrip("\r\n")


def _parquet_rows(spec: Declaration) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    parquet = _read_parquet(spec.path, pq.ParquetFile)
    for batch in parquet.iter_batches(columns=sorted(spec.source_columns())):
        yield from batch.to_pylist()


def _read_parquet(path: Path, reader: Any) -> Any:
    import pyarrow as pa

    try:
        return reader(path)
    except (pa.ArrowException, OSError) as error:
        raise DeclarationError(f"{path.name} is not a readable Parquet file: {error}") from None


@contextmanager
def _open_text(spec: Declaration) -> Iterator[TextIO]:
    """The dataset opened as text; a decoding failure while reading is a DeclarationError."""
    try:
        text = spec.path.open(encoding=spec.encoding, newline="" if spec.format == "csv" else None)
    except LookupError:
        raise DeclarationError(f"unknown encoding {spec.encoding!r}") from None
    with text:
        try:
            yield text
        except UnicodeDecodeError as error:
            raise DeclarationError(
                f"{spec.path.name} is not {spec.encoding} text (byte {error.start}); "
                "set encoding in [feed]"
            ) from None


# ---------------------------------------------------------------- writing the feed


@dataclass
class _FeedFileWritten:
    """Counts and truth rows gathered while writing a declared feed's file."""

    records: int = 0
    rejected: int = 0
    duplicates: int = 0
    examples: list[str] = field(default_factory=list)
    truth: list[tuple[str, str, str, str]] = field(default_factory=list)
    record_ids: set[str] = field(default_factory=set)
    unparsed: dict[str, int] = field(default_factory=dict)
    unparsed_examples: list[str] = field(default_factory=list)

    def add(
        self, spec: Declaration, number: int, row: dict[str, Any] | str, line: str,
        unparsed: dict[str, str],
    ) -> None:
        """Count one written line, checked with `parse_declared_line` exactly as the engine
        will, and keep its truth row (a refused line's bad_kind is `rejected`); `unparsed`
        holds the date fields written as unknown, with their values as given."""
        self.records += 1
        for name, raw in unparsed.items():
            self.unparsed[name] = self.unparsed.get(name, 0) + 1
            if len(self.unparsed_examples) < _MAX_EXAMPLES:
                self.unparsed_examples.append(
                    f"record {number}: {name} {raw!r} is not a real date; kept with {name} unknown"
                )
        try:
            record_id, bad_kind = parse_declared_line(spec.name, line).record_id, ""
            self.duplicates += record_id in self.record_ids
            self.record_ids.add(record_id)
        except BadRecord as reason:
            raw_id = _text(row.get(spec.record_id)) if isinstance(row, dict) else None
            record_id = raw_id if isinstance(raw_id, str) else f"@{spec.path.name}:{number}"
            bad_kind = REJECTED
            self.rejected += 1
            if len(self.examples) < _MAX_EXAMPLES:
                self.examples.append(f"record {number}: {reason}")
        if spec.truth:
            person = _text(row.get(spec.truth)) if isinstance(row, dict) else None
            self.truth.append((spec.name, record_id, str(person or ""), bad_kind))


def _write_feed_file(spec: Declaration, feed_file: Path) -> _FeedFileWritten:
    """Write one feed line per source record, atomically (the engine never sees half a file)."""
    fallback_time = _utc_text(dt.datetime.fromtimestamp(spec.path.stat().st_mtime, dt.UTC))
    written = _FeedFileWritten()
    partial = feed_file.with_name(f"{feed_file.name}.partial")
    try:
        with partial.open("w", encoding="utf-8") as out:
            for number, row in enumerate(_source_rows(spec), start=1):
                line, unparsed = _feed_line(spec, row, fallback_time)
                out.write(line + "\n")
                written.add(spec, number, row, line, unparsed)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, feed_file)
    return written


def _feed_line(
    spec: Declaration, row: dict[str, Any] | str, fallback_time: str
) -> tuple[str, dict[str, str]]:
    """The feed-contract JSON line of one source record (a raw non-object line as it is), and
    the date fields it leaves unknown because they are not real dates (with their values)."""
    if isinstance(row, str):
        return row, {}
    event_time = row.get(spec.event_time) if spec.event_time else None
    line: dict[str, Any] = {
        "record_id": _text(row.get(spec.record_id)),
        "event": DECLARED_EVENTS[0],
        "event_time": _event_time_value(event_time, spec.date_format, fallback_time),
    }
    if spec.source_key:
        line["source_key"] = _text(row.get(spec.source_key))
    unparsed: dict[str, str] = {}
    for canonical, column in spec.columns.items():
        value = line[canonical] = _field_value(spec, canonical, row.get(column))
        if canonical in DATE_FIELDS and canonical not in spec.required and _is_unparsed(value):
            line[canonical], line[canonical + AS_GIVEN_SUFFIX] = None, value
            unparsed[canonical] = value
    if _CSV_EXTRA_CELLS in row and spec.format == "csv":
        line[_CSV_EXTRA_CELLS] = row[_CSV_EXTRA_CELLS]
    return json.dumps(line, ensure_ascii=False, default=str), unparsed


def _is_unparsed(date_value: Any) -> bool:
    """A date field's written value is text the adapter would refuse as not a real date."""
    if not isinstance(date_value, str):
        return False
    try:
        norm.calendar_date(date_value)
    except ValueError:
        return True
    return False


def _field_value(spec: Declaration, canonical: str, value: Any) -> Any:
    """A source value for a canonical field: dates as YYYY-MM-DD, sex as M/F, the rest as text."""
    if canonical in DATE_FIELDS:
        return _date_value(value, spec.date_format)
    if canonical == "sex":
        text = _text(value)
        return spec.sex_codes.get(text.strip().upper()) if isinstance(text, str) else text
    return _text(value)


def _text(value: Any) -> Any:
    """A scalar as the feed contract's string (blank -> None); lists and objects unchanged, so
    that the adapter refuses the record."""
    if value is None or isinstance(value, str):
        return value if value and not value.isspace() else None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, list | dict):
        return value
    return str(value)


def _date_value(value: Any, date_format: str) -> Any:
    """YYYY-MM-DD when the value is a date or reads with `date_format`; otherwise the raw value
    (the adapter then refuses the record, naming the field and the value)."""
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    text = _text(value)
    if not isinstance(text, str):
        return text
    try:
        return dt.datetime.strptime(text.strip(), date_format).date().isoformat()
    except ValueError:
        return text


def _event_time_value(value: Any, date_format: str, fallback: str) -> Any:
    """UTC `YYYY-MM-DDTHH:MM:SSZ` from an ISO 8601 time (no offset: taken as UTC) or a date in
    `date_format`; `fallback` when blank; otherwise the raw value (refused by the adapter)."""
    if isinstance(value, dt.date):
        moment = value if isinstance(value, dt.datetime) else dt.datetime(*value.timetuple()[:3])
        return _utc_text(moment)
    text = _text(value)
    if text is None:
        return fallback
    if not isinstance(text, str):
        return text
    for read in (dt.datetime.fromisoformat, lambda t: dt.datetime.strptime(t, date_format)):
        try:
            return _utc_text(read(text.strip()))
        except (ValueError, OverflowError):
            continue
    return text


def _utc_text(moment: dt.datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


def _write_truth(truth_out: Path, feed: str, rows: list[tuple[str, str, str, str]]) -> int:
    """Replace `feed`'s rows of the truth file (created if need be) by `rows`; other feeds' rows
    are kept. Returns the number of rows written for `feed`."""
    kept: list[list[str]] = []
    if truth_out.is_file():
        with truth_out.open(newline="", encoding="utf-8") as existing:
            kept = [row + [""] * (len(TRUTH_HEADER) - len(row))
                    for row in list(csv.reader(existing))[1:] if row and row[0] != feed]
    truth_out.parent.mkdir(parents=True, exist_ok=True)
    partial = truth_out.with_name(f"{truth_out.name}.partial")
    with partial.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(TRUTH_HEADER)
        writer.writerows(kept)
        writer.writerows(rows)
    os.replace(partial, truth_out)
    return len(rows)
