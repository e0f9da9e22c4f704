"""Engine configuration is checked by type and range (one line naming `section.key`, exit status
2), the dataclasses hold the defaults, and source trust ranks compare as numbers (issue 15)."""

from dataclasses import asdict, replace
from pathlib import Path

import duckdb
import pytest

from engine.cli import main
from engine.config import EngineConfig, SurvivorshipConfig
from tests.feeds import gro_birth, nhs_record, run, write_feed


@pytest.mark.parametrize("toml, message", [
    ('[decision]\nlink_threshold = "0.9"',
     "decision.link_threshold must be a number, got a string '0.9'"),
    ("[batch]\nmax_records = 2.5", "batch.max_records must be an integer, got a float 2.5"),
    ("[store]\nmemory_limit_mb = true", "store.memory_limit_mb must be an integer, got a boolean"),
    ("[batch]\nmax_latency_ms = 50", "batch.max_latency_ms is no longer a setting"),
    ('[decision]\nexclusive_key_feeds = "gro"',
     "decision.exclusive_key_feeds must be a list of strings, got a string 'gro'"),
    ('[survivorship]\nsource_trust = {gro = "high"}',
     "survivorship.source_trust must be a table of integers"),
    ("[decision]\nreview_threshold = 1.5",
     "decision.review_threshold must be a probability between 0 and 1 (exclusive), got 1.5"),
    ("[source]\nlines_per_read = 0", "source.lines_per_read must be at least 1, got 0"),
    ("[survivorship]\nsource_trust = {gro = -1}",
     "survivorship.source_trust must be ranks from 0 to 1000"),
    ("[decision]\nreview_threshold = 0.9\nlink_threshold = 0.8",
     "decision.review_threshold must not exceed decision.link_threshold"),
    ("[recovery]\nenabled = true", "[recovery] is no longer a setting"),
    ("[batch]\nmax_record = 10", "unknown key(s) ['max_record'] in [batch]"),
])
def test_a_bad_value_is_one_line_naming_the_setting_and_exit_status_2(
    toml: str, message: str, tmp_path: Path, capsys
):
    config = tmp_path / "engine.toml"
    config.write_text(toml)
    (tmp_path / "feeds").mkdir()

    status = main(["run", "--feeds", str(tmp_path / "feeds"), "--db", str(tmp_path / "m.duckdb"),
                   "--config", str(config)])

    err = capsys.readouterr().err.strip()
    assert status == 2
    assert err.startswith(f"contactpoint run: config {config}: ") and len(err.splitlines()) == 1
    assert message in err
    assert not (tmp_path / "m.duckdb").exists()


def test_every_default_written_out_as_toml_reads_back_as_the_defaults():
    sections = {
        name: {key: list(value) if isinstance(value, tuple) else value
               for key, value in values.items()}
        for name, values in asdict(EngineConfig()).items()
    }
    assert EngineConfig.from_sections(sections) == EngineConfig()


@pytest.mark.parametrize("trust, middle_names", [
    ({"gro": 9, "nhs": 10}, "MAY"),
    ({"gro": 10, "nhs": 9}, "ROSE"),
])
def test_source_trust_ranks_compare_as_numbers(trust: dict, middle_names: str, tmp_path: Path):
    feeds, db = tmp_path / "feeds", tmp_path / "master.duckdb"
    write_feed(feeds, "gro", [gro_birth("g1", "Ava Rose", "Brown", "F", "2009-03-01", "LS6 2AB",
                                        nhs_number="9434765919")])
    write_feed(feeds, "nhs", [nhs_record("n1", "9434765919", "Ava", "Brown", "2", "2009-03-01",
                                         "LS6 2AB", other_given_names="May")])
    survivorship = replace(SurvivorshipConfig(), source_trust=trust)

    run(feeds, db, config=replace(EngineConfig(), survivorship=survivorship))

    con = duckdb.connect(str(db), read_only=True)
    golden = con.execute("SELECT middle_names FROM children").fetchall()
    con.close()
    assert golden == [(middle_names,)]
