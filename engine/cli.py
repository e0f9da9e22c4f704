"""The `contactpoint` command (also `python -m engine`): generate, import, train, run, and the
governance verbs (search, explain, evaluate, users, audit…) and `serve` (the web application).

Exit status 0 on success, 2 on bad usage or bad configuration with a one-line reason on stderr.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from rich.console import Console

from engine.errors import UsageError

DEFAULT_DB = Path("data/master.duckdb")

err_console = Console(stderr=True)
out_console = Console()


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except UsageError as err:
        print(f"contactpoint {args.verb}: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"contactpoint {args.verb}: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="contactpoint",
        description="ContactPoint Stream: one master record per child from the GRO, DWP, NHS and "
        "school census feeds, resolved by a Splink model in DuckDB as the feeds stream in.",
        epilog="Run `contactpoint VERB --help` for each verb's options. Quick start: `make demo`.",
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for register in (_add_generate, _add_import, _add_train, _add_model, _add_run, _add_restore):
        register(verbs)
    from engine.governance.cli import register_governance_verbs
    from engine.web.cli import register_web_verbs

    register_governance_verbs(verbs)
    register_web_verbs(verbs)
    return parser


def _verb(
    verbs: argparse._SubParsersAction, name: str, help_text: str, description: str,
    handler: Callable[[argparse.Namespace], int],
) -> argparse.ArgumentParser:
    sub = verbs.add_parser(name, help=help_text, description=description)
    sub.set_defaults(handler=handler)
    return sub


# ---------------------------------------------------------------- generate


def _add_generate(verbs: argparse._SubParsersAction) -> None:
    sub = _verb(
        verbs, "generate", "write synthetic feeds and their truth",
        "Simulate a child population and write the four feeds as DIR/feeds/<feed>/YYYY-MM.jsonl "
        "plus DIR/truth.csv (feed,record_id,person_id,bad_kind). The same seed gives "
        "byte-identical files.", _generate,
    )
    sub.add_argument("--children", type=int, required=True, help="children alive at the start")
    sub.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    sub.add_argument("--out", type=Path, required=True, help="output folder")
    sub.add_argument("--config", type=Path, help="TOML file overriding generator rates")
    sub.add_argument("--json", action="store_true", help="print the summary as JSON")


def _generate(args: argparse.Namespace) -> int:
    from streams.generator import GeneratorConfig, generate

    if args.children < 1:
        raise UsageError("--children must be at least 1")
    try:
        config = GeneratorConfig.from_toml(args.config) if args.config else None
    except (OSError, ValueError) as err:
        raise UsageError(f"generator config {args.config}: {err}") from err
    from engine.progress import progress_bar

    with progress_bar(err_console, f"generating {args.children:,} children") as advance:
        summary = generate(args.children, args.seed, args.out, config=config, progress=advance)
    _print_result(summary.to_dict(), args.json, f"Synthetic feeds written to {args.out}")
    return 0


# ---------------------------------------------------------------- import


def _add_import(verbs: argparse._SubParsersAction) -> None:
    sub = _verb(
        verbs, "import", "bring your own data: a dataset declared as a feed",
        "Convert a person dataset (CSV, JSONL or Parquet) declared in a TOML file (path, format, "
        "column mapping onto the canonical fields, date format, record id column) into a feed "
        "folder FEEDS/<name>/ that train, run and evaluate read like the national feeds. An "
        "admin registers the feed before `run` accepts it: `contactpoint sources register NAME "
        "--by ADMIN`. See docs/own-data.md.", _import,
    )
    sub.add_argument("--declaration", type=Path, required=True, help="the feed's TOML file")
    sub.add_argument("--feeds", type=Path, required=True, help="folder holding the feed folders")
    sub.add_argument("--truth", type=Path, help="write truth rows here (declared truth column)")
    sub.add_argument("--json", action="store_true", help="print the summary as JSON")


def _import(args: argparse.Namespace) -> int:
    from streams.declared import DeclarationError, import_declared_feed

    try:
        summary = import_declared_feed(args.declaration, args.feeds, args.truth)
    except DeclarationError as err:
        raise UsageError(str(err)) from err
    _print_result(summary.to_dict(), args.json, f"Imported into {args.feeds}")
    return 0


# ---------------------------------------------------------------- train


def _add_train(verbs: argparse._SubParsersAction) -> None:
    sub = _verb(
        verbs, "train", "train a linkage model on a feed snapshot",
        "Train a model spec (default: the shipped child spec, linkage_models/child_model.toml) "
        "on every good record under FEEDS: the prior from deterministic rules, u by random "
        "sampling, m by expectation maximisation (a session whose blocking rule finds too few "
        "pairs is skipped with a warning). Writes the versioned model JSON and an offline HTML "
        "training report beside it, and says what was estimated from what. See docs/model.md.",
        _train,
    )
    sub.add_argument("--feeds", type=Path, required=True, help="folder holding the feed folders")
    sub.add_argument("--out", type=Path, required=True, help="model JSON to write")
    sub.add_argument("--spec", type=Path, help="model spec, TOML or JSON (default: the child "
                     "model's spec)")
    sub.add_argument("--seed", type=int, default=1, help="sampling seed (default 1)")
    sub.add_argument("--truth", type=Path, help="truth.csv: record the true number of persons "
                     "trained on (metadata.trained_on_persons)")
    sub.add_argument("--json", action="store_true", help="print the metadata as JSON")


def _train(args: argparse.Namespace) -> int:
    from linkage_models.settings import DEFAULT_SPEC_PATH, SpecError, load_spec
    from linkage_models.training import TrainingError, train_model

    spec_path = args.spec or DEFAULT_SPEC_PATH
    if args.truth and not args.truth.is_file():
        raise UsageError(f"truth file {args.truth} does not exist")
    try:
        spec = load_spec(spec_path)
    except SpecError as err:
        raise UsageError(f"{spec_path}: {err}") from err
    snapshot = _read_snapshot(args.feeds)
    with err_console.status("training") as status:
        try:
            metadata = train_model(snapshot.updates, args.out, spec=spec, seed=args.seed,
                                   progress=lambda s: _training_progress(status, s),
                                   truth_csv=args.truth)
        except TrainingError as err:
            raise UsageError(str(err)) from err
    if args.json:
        print(json.dumps(metadata, default=str))
        return 0
    for line in _training_lines(metadata["training"]):
        err_console.print(line, highlight=False)
    shown = {key: value for key, value in metadata.items() if key != "training"}
    _print_result(shown, False, f"Model written to {args.out}")
    return 0


def _read_snapshot(feeds: Path):
    """Every good record under `feeds` (for train and model init), with a line saying so."""
    from streams.snapshot import read_updates

    if not feeds.is_dir():
        raise UsageError(f"feeds folder {feeds} does not exist")
    with err_console.status("reading feeds"):
        snapshot = read_updates(feeds)
    err_console.print(
        f"{snapshot.updates.num_rows:,} good records from {snapshot.files} files "
        f"({snapshot.bad_lines:,} bad lines skipped)"
    )
    return snapshot


def _training_progress(status, message: str) -> None:
    """Warnings stay on screen; other progress replaces the status line."""
    if message.startswith(("EM session skipped", "comparison ")):
        err_console.print(f"warning: {message}", highlight=False)
    else:
        status.update(message)


def _training_lines(training: dict) -> Iterator[str]:
    """What training estimated from what, one line each."""
    prior = training["prior"]
    yield (f"prior {prior['probability_two_random_records_match']:.3g} from "
           f"{prior['pairs']:,} pairs of the deterministic rules (recall {prior['recall']})")
    yield f"u from {training['u']['random_pairs']:,.0f} random pairs"
    for session in training["em_sessions"]:
        if session["skipped"]:
            yield f"m: skipped {session['rule']} ({session['pairs']:,} pairs)"
        else:
            sample = (f" (a sample of about {session['sampled_pairs']:,.0f})"
                      if session["sampled_pairs"] else "")
            yield (f"m of {', '.join(session['estimated'])} from {session['pairs']:,} pairs "
                   f"of {session['rule']}{sample}")


# ---------------------------------------------------------------- model


def _add_model(verbs: argparse._SubParsersAction) -> None:
    sub = verbs.add_parser("model", help="model specs: write a starter spec",
                           description="Model specs (docs/model.md).")
    actions = sub.add_subparsers(dest="model_action", required=True, metavar="ACTION")
    init = _verb(
        actions, "init", "write a starter spec from the columns the feeds carry",
        "Read every good record under FEEDS and write a starter model spec (TOML, or JSON when "
        "OUT ends in .json): Splink library comparisons for the person fields the records "
        "carry, blocking rules over pairs of them, and a training plan. Train it with "
        "`contactpoint train --spec OUT`, then tune it.", _model_init,
    )
    init.add_argument("--feeds", type=Path, required=True, help="folder holding the feed folders")
    init.add_argument("--out", type=Path, required=True, help="spec file to write")
    init.add_argument("--name", default="model", help="model name (the version's prefix)")


def _model_init(args: argparse.Namespace) -> int:
    from linkage_models.settings import SpecError
    from linkage_models.starter import carried_fields, starter_spec, write_spec

    snapshot = _read_snapshot(args.feeds)
    try:
        spec = starter_spec(snapshot.updates, args.name)
    except SpecError as err:
        raise UsageError(f"no starter spec for these records: {err}") from err
    carried = sorted(carried_fields(snapshot.updates) - {"feed", "record_id", "event",
                                                          "event_time"})
    write_spec(spec, args.out, header=(
        f"Starter model spec written by `contactpoint model init --feeds {args.feeds}`.\n"
        f"Fields carried by the records: {', '.join(carried)}.\n"
        "Train: contactpoint train --spec THIS --feeds DIR --out MODEL.json; format: "
        "docs/model.md"
    ))
    compared = ", ".join(
        str(entry.get("col_name") or entry.get("output_column_name")) for entry in spec.comparisons
    )
    err_console.print(
        f"{len(spec.comparisons)} comparisons ({compared}), {len(spec.blocking_rules)} "
        f"blocking rules, {len(spec.training.em_blocking_rules)} EM sessions", highlight=False,
    )
    out_console.print(f"Starter spec written to {args.out}")
    return 0


# ---------------------------------------------------------------- run


def _add_run(verbs: argparse._SubParsersAction) -> None:
    sub = _verb(
        verbs, "run", "stream the feeds into the master",
        "Read every feed's *.jsonl (resuming where the last run stopped), resolve each "
        "micro-batch of updates against the master with the linkage model, and upsert the "
        "children. With --follow, keep tailing new lines and files until Ctrl-C/SIGTERM, which "
        "stops cleanly after the current batch.", _run,
    )
    sub.add_argument("--feeds", type=Path, required=True, help="folder holding the feed folders")
    sub.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"master file ({DEFAULT_DB})")
    sub.add_argument("--model", type=Path, help="model JSON (default: the shipped model, "
                     "linkage_models/child_model.json)")
    sub.add_argument("--config", type=Path, help="engine TOML (thresholds, batch bounds)")
    sub.add_argument("--follow", action="store_true", help="keep tailing the feeds")
    sub.add_argument("--workers", type=int, default=1, help="Bytewax workers in this process")
    sub.add_argument("--process-id", type=int, help="this process's index in a cluster")
    sub.add_argument("--addresses", help="cluster: comma-separated host:port of every process")
    sub.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    sub.add_argument("--profile", action="store_true",
                     help="add where the batches' time went: seconds, ms per batch and share "
                          "per resolver stage (intake, xref, candidates, scores, neighbourhood, "
                          "decide, write, commit)")


def _run(args: argparse.Namespace) -> int:
    from engine.config import ConfigError, EngineConfig
    from engine.dataflow import RunOptions
    from engine.feed_source import StopSignal
    from engine.governance.errors import GovernanceError
    from engine.governance.service import check_private_folder
    from engine.master_store import MasterStoreError
    from engine.progress import RunProgress
    from engine.runner import run_engine
    from linkage_models.scoring import DEFAULT_MODEL_PATH, ModelError

    try:
        config = EngineConfig.from_toml(args.config) if args.config else EngineConfig()
    except ConfigError as err:
        raise UsageError(str(err)) from err
    if (args.process_id is None) != (args.addresses is None):
        raise UsageError("--process-id and --addresses go together")
    options = RunOptions(
        feeds_dir=args.feeds, db_path=args.db, model_path=args.model or DEFAULT_MODEL_PATH,
        config=config, follow=args.follow, workers=args.workers, process_id=args.process_id,
        addresses=tuple(args.addresses.split(",")) if args.addresses else (),
        service=_governance_service,
    )
    stop = StopSignal()
    _stop_cleanly_on_signals(stop, args)
    progress = RunProgress()
    try:
        if options.owns_master:
            check_private_folder(args.db.absolute().parent)  # where the service's socket goes
        summary = run_engine(options, stop, progress, progress.ready)
    except (ConfigError, GovernanceError, MasterStoreError, ModelError) as err:
        raise UsageError(str(err)) from err
    progress.finish()
    if stop.is_set():
        err_console.print("Stopped after the current batch. Run the same command to resume.")
    if summary is None:
        err_console.print(f"process {args.process_id} done; process 0 prints the run summary")
        return 0
    result = summary.to_dict() | ({"profile": progress.profile()} if args.profile else {})
    _print_result(result, args.json, "Run summary")
    return 0


def _governance_service(con, db_path: Path, model):
    """People's searches and acts are served by the engine process while it holds the master."""
    from engine.governance.service import start_service

    return start_service(con, db_path, model)


def _stop_cleanly_on_signals(stop, args: argparse.Namespace) -> None:
    def on_signal(signum: int, _frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        err_console.print(
            f"\n{signal.Signals(signum).name}: finishing the current batch "
            "(again to abort; a later `run` resumes)."
        )
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)


# ---------------------------------------------------------------- restore


def _add_restore(verbs: argparse._SubParsersAction) -> None:
    sub = _verb(
        verbs, "restore", "put a backup in place as the master",
        "Check the backup in DIR (manifest, schema version, size and SHA-256), move the master "
        "at --db aside (to FILE.before-restore-TIME) and put the backup in its place. No "
        "process may hold the master. The next `run` reads every feed line after the backup's "
        "own positions. Backups are taken with `contactpoint backup`.", _restore,
    )
    sub.add_argument("--from", dest="source", type=Path, required=True, metavar="DIR",
                     help="a folder written by `contactpoint backup`")
    sub.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"master file ({DEFAULT_DB})")
    sub.add_argument("--json", action="store_true", help="print the manifest as JSON")


def _restore(args: argparse.Namespace) -> int:
    from engine.backup import BackupError, restore_backup

    try:
        restored = restore_backup(args.source, args.db)
    except BackupError as err:
        raise UsageError(str(err)) from err
    if args.json:
        print(json.dumps(restored))
        return 0
    out_console.print(
        f"Restored {args.db} from the backup of {restored['created_at']} "
        f"({restored['counts']['links']:,} links)."
        + (f" The master it replaced is {restored['replaced']}." if restored["replaced"] else "")
        + " The next `run` reads the feeds from the backup's positions."
    )
    return 0


# ---------------------------------------------------------------- evaluate --compare


def compare_models_verb(args: argparse.Namespace) -> int:
    """`evaluate --compare A.json B.json --feeds DIR --truth T`: the models side by side on the
    records of a feed snapshot and its truth (engine.governance.cli routes it here: it reads no
    master)."""
    from linkage_models.evaluation import compare_models
    from linkage_models.scoring import ModelError

    if len(args.compare) < 2:
        raise UsageError("--compare needs two or more model files")
    if not args.feeds:
        raise UsageError("--compare scores the records of a feed snapshot: give --feeds DIR "
                         "(the master's records are read only by an audited evaluate)")
    if not args.truth.is_file():
        raise UsageError(f"truth file {args.truth} does not exist")
    chart = args.chart or args.compare[0].with_name("model-comparison.html")
    records = _read_snapshot(args.feeds).updates
    try:
        result = compare_models(records, args.truth, args.compare, chart)
    except ModelError as err:
        raise UsageError(str(err)) from err
    if args.json:
        print(json.dumps(result, default=str))
        return 0
    from rich.table import Table

    table = Table(title=f"{result['records']:,} records, {result['true_pairs']:,} true pairs "
                  f"(chart: {chart})", title_justify="left")
    table.add_column("threshold")
    for model in result["models"]:
        table.add_column(f"{Path(model['model']).name}\nprecision / recall / F1")
    for row, threshold in enumerate(result["models"][0]["thresholds"]):
        table.add_row(f"{threshold['threshold']}", *(
            "{precision:.4f} / {recall:.4f} / {f1:.4f}".format(**m["thresholds"][row])
            for m in result["models"]
        ))
    table.add_row("blocking recall", *(f"{m['blocking_recall']:.4f}" for m in result["models"]))
    out_console.print(table)
    return 0


# ---------------------------------------------------------------- output helpers


def _print_result(result: dict, as_json: bool, title: str) -> None:
    if as_json:
        print(json.dumps(result, default=str))
        return
    from rich.table import Table

    table = Table(title=title, show_header=False, title_justify="left")
    for key, value in _flattened(result):
        table.add_row(key, _shown(value))
    out_console.print(table)


def _flattened(result: dict, prefix: str = "") -> Iterator[tuple[str, object]]:
    """Nested dicts as `outer.inner` rows."""
    for key, value in result.items():
        if isinstance(value, dict) and value:
            yield from _flattened(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _shown(value: object) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, list):
        return json.dumps(value, default=str)[:200]
    return str(value)
