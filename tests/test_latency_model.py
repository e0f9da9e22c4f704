"""The follow latency model (benchmarks.latency_model) against the arithmetic of docs/scale.md
("why the p99 is ~2.5 batches"): a writer never idle while lines wait settles at a cycle of
C = (gap + intercept) / (1 − per_update · rate), and a line waits up to one cycle and its own
batch."""

import json
from dataclasses import asdict, replace

import pytest

from benchmarks.follow import percentiles_ms
from benchmarks.latency_model import (
    BatchCost,
    follow_latencies_ms,
    main,
    side_by_side_latencies_ms,
)

STEADY = BatchCost(intercept_ms=100.0, per_update_ms=0.2, gap_ms=20.0, growth=0.0,
                   heavy_ms=0.0, noise=0.0)


def test_a_steady_cost_settles_where_the_arithmetic_says() -> None:
    cycle = (STEADY.gap_ms + STEADY.intercept_ms) / (1 - STEADY.per_update_ms * 1.0)  # 150 ms
    batch = cycle - STEADY.gap_ms
    # leave out the first second, while the cycles settle from a first batch of one line
    settled = follow_latencies_ms(STEADY, rate=1000, seconds=20)[1000:]
    assert max(settled) == pytest.approx(cycle + batch, abs=2)
    assert percentiles_ms(settled)["p50"] == pytest.approx(batch + cycle / 2, abs=2)


@pytest.mark.parametrize("dearer", [{"growth": 0.2}, {"heavy_ms": 50.0}])
def test_a_session_growing_dearer_or_batches_that_move_records_raise_the_p99(dearer) -> None:
    steady = percentiles_ms(follow_latencies_ms(STEADY, seconds=20))["p99"]
    raised = percentiles_ms(follow_latencies_ms(BatchCost(**{
        **asdict(STEADY), **dearer}), seconds=20))["p99"]
    assert raised > steady + 20


def test_every_line_gets_a_latency_and_the_cli_prints_them(capsys) -> None:
    assert len(follow_latencies_ms(BatchCost(), rate=500, seconds=3)) == 1500
    assert main(["--seconds", "3", "--heavy-ms", "0"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["model"]["heavy_ms"] == 0
    assert printed["p50_ms"] < printed["p99_ms"] <= printed["max_ms"]


def test_a_rate_of_zero_is_refused_with_the_reason(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--rate", "0"])
    assert "--rate and --seconds must be positive" in capsys.readouterr().err


def test_a_part_run_ahead_is_waited_for_and_overlapping_it_shortens_the_p99() -> None:
    whole = replace(STEADY, intercept_ms=150.0)
    split = replace(STEADY, intercept_ms=75.0, ahead_intercept_ms=75.0)
    latencies = follow_latencies_ms(split, seconds=20)
    assert min(latencies) >= 75.0 + 75.0  # a line waits for both parts of its batch
    assert (percentiles_ms(latencies)["p99"]
            < percentiles_ms(follow_latencies_ms(whole, seconds=20))["p99"] - 50)


def test_two_staggered_writers_side_by_side_shorten_the_wait() -> None:
    one = follow_latencies_ms(STEADY, seconds=20)[1000:]
    two = side_by_side_latencies_ms(STEADY, writers=2, seconds=20)
    assert len(two) == 20000
    # unstaggered, a writer freed a moment after the other started would take a line or two
    # at the whole fixed cost, and the p99 would gain ~35 ms, not ~80
    assert percentiles_ms(two[1000:])["p99"] < percentiles_ms(one)["p99"] - 50


@pytest.mark.parametrize("dearer", [{"contention": 1.3}, {"redo_share": 0.2}])
def test_writers_slowed_by_each_other_or_resolving_batches_again_lose_it(dearer) -> None:
    two = percentiles_ms(side_by_side_latencies_ms(STEADY, writers=2, seconds=20))["p99"]
    raised = percentiles_ms(side_by_side_latencies_ms(replace(STEADY, **dearer), writers=2,
                                                      seconds=20))["p99"]
    assert raised > two + 30


def test_writers_and_a_part_run_ahead_are_refused_together(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--writers", "2", "--ahead-intercept", "50"])
    assert "two models" in capsys.readouterr().err
    assert main(["--seconds", "3", "--writers", "2", "--contention", "1.2"]) == 0
    assert json.loads(capsys.readouterr().out)["writers"] == 2
