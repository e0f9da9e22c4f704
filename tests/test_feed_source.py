"""Feed files are read in order, resumably, and a line still being written waits in follow mode."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.feed_positions import FeedPosition, FollowStarted
from engine.feed_source import FeedFilesSource
from engine.feed_watch import FeedWatch


def make_source(feeds: Path, follow: bool, start: dict | None = None) -> FeedFilesSource:
    return FeedFilesSource(
        feeds, ("gro",), follow=follow, lines_per_read=2, poll_interval=timedelta(milliseconds=1),
        start=start,
    )


def read_all(part) -> list:
    lines = []
    while True:
        try:
            batch = part.next_batch()
        except StopIteration:
            return lines
        if not batch:
            return lines
        for chunk in batch:
            lines.extend(chunk.lines)


@pytest.fixture
def feeds(tmp_path: Path) -> Path:
    (tmp_path / "gro").mkdir()
    (tmp_path / "gro" / "2009-01.jsonl").write_text('{"a": "1"}\n{"a": "2"}\n{"a": "3"}\n')
    (tmp_path / "gro" / "2009-02.jsonl").write_text('{"a": "4"}\n')
    return tmp_path


def test_lines_come_in_file_order_with_file_and_line_numbers(feeds: Path):
    part = make_source(feeds, follow=False).build_part("feeds", "feeds", None)
    lines = read_all(part)
    assert [(x.file, x.line) for x in lines] == [
        ("gro/2009-01.jsonl", 1), ("gro/2009-01.jsonl", 2), ("gro/2009-01.jsonl", 3),
        ("gro/2009-02.jsonl", 1),
    ]
    assert lines[3].text == '{"a": "4"}'


def test_each_chunk_ends_with_the_position_after_its_last_line(feeds: Path):
    part = make_source(feeds, follow=False).build_part("feeds", "feeds", None)
    (first,) = part.next_batch()
    assert [x.line for x in first.lines] == [1, 2]
    assert first.end == FeedPosition("gro/2009-01.jsonl", len('{"a": "1"}\n') * 2, 2)


def test_a_chunk_ends_at_every_batch_sized_boundary_counted_from_the_start_of_the_run(
    feeds: Path,
):
    source = FeedFilesSource(feeds, ("gro",), follow=False, lines_per_read=10,
                             poll_interval=timedelta(milliseconds=1), chunk_boundary=2)
    chunks = source.build_part("feeds", "feeds", None).next_batch()
    assert [(c.end.file, c.end.line) for c in chunks] == [
        ("gro/2009-01.jsonl", 2), ("gro/2009-01.jsonl", 3), ("gro/2009-02.jsonl", 1)]


def test_a_source_started_at_the_masters_positions_continues_after_them(feeds: Path):
    (first,) = make_source(feeds, follow=False).build_part("feeds", "feeds", None).next_batch()
    start = {first.end.file: (first.end.byte_offset, first.end.line)}
    resumed = make_source(feeds, follow=False, start=start).build_part("feeds", "feeds", None)
    rest = read_all(resumed)
    assert [x.text for x in first.lines + rest] == [f'{{"a": "{i}"}}' for i in range(1, 5)]
    assert [x.line for x in rest] == [3, 1]


def test_a_state_bytewax_kept_is_not_where_the_source_resumes(feeds: Path):
    """A recovery store ahead of the master (or another master's) would skip lines."""
    ahead = {"gro/2009-01.jsonl": (33, 3), "gro/2009-02.jsonl": (11, 1)}
    part = make_source(feeds, follow=False).build_part("feeds", "feeds", ahead)
    assert len(read_all(part)) == 4


def test_follow_waits_for_a_half_written_line_and_picks_up_new_files(feeds: Path):
    part = make_source(feeds, follow=True).build_part("feeds", "feeds", None)
    assert part.next_batch() == [FollowStarted()]  # before any line: the master opens at once
    assert len(read_all(part)) == 4
    with (feeds / "gro" / "2009-02.jsonl").open("a") as handle:
        handle.write('{"a": "5"')
    assert part.next_batch() == []
    with (feeds / "gro" / "2009-02.jsonl").open("a") as handle:
        handle.write("}\n")
    (feeds / "gro" / "2009-03.jsonl").write_text('{"a": "6"}\n')
    assert [x.text for x in read_all(part)] == ['{"a": "5"}', '{"a": "6"}']


def test_invalid_utf8_is_flagged_not_raised(tmp_path: Path):
    (tmp_path / "gro").mkdir()
    (tmp_path / "gro" / "x.jsonl").write_bytes(b'{"a": "\xff"}\n')
    part = make_source(tmp_path, follow=False).build_part("feeds", "feeds", None)
    (line,) = read_all(part)
    assert line.valid_utf8 is False


def test_periods_are_read_across_feeds_before_the_next_period(tmp_path: Path):
    for feed, month in [("nhs", "2009-01"), ("gro", "2009-01"), ("gro", "2009-02"),
                        ("police", "2009-01")]:
        (tmp_path / feed).mkdir(exist_ok=True)
        (tmp_path / feed / f"{month}.jsonl").write_text("{}\n")
    source = FeedFilesSource(tmp_path, ("gro", "dwp", "nhs", "census"), follow=False,
                             lines_per_read=10, poll_interval=timedelta(milliseconds=1))
    lines = read_all(source.build_part("feeds", "feeds", None))
    assert [x.file for x in lines] == [
        "gro/2009-01.jsonl", "nhs/2009-01.jsonl", "police/2009-01.jsonl", "gro/2009-02.jsonl"]


def watched_source(feeds: Path) -> FeedFilesSource:
    """Following with a watch and a poll interval longer than any test: a line is read only if
    the watch saw its file change."""
    return FeedFilesSource(feeds, ("gro", "nhs"), follow=True, lines_per_read=10,
                           poll_interval=timedelta(hours=1),
                           watch_interval=timedelta(milliseconds=5))


def test_following_with_a_watch_a_changed_file_is_read_at_the_next_look(feeds: Path):
    part = watched_source(feeds).build_part("feeds", "feeds", None)
    try:
        assert part.next_batch() == [FollowStarted()]
        assert len(read_all(part)) == 4
        awake = part.next_awake()
        assert awake is not None and awake - datetime.now(UTC) <= timedelta(milliseconds=5)
        with (feeds / "gro" / "2009-02.jsonl").open("a") as handle:
            handle.write('{"a": "5"}\n')
        assert [x.text for x in read_all(part)] == ['{"a": "5"}']
    finally:
        part.close()


def test_following_with_a_watch_a_feed_folder_made_later_is_watched_too(feeds: Path):
    part = watched_source(feeds).build_part("feeds", "feeds", None)
    try:
        part.next_batch()
        read_all(part)
        (feeds / "nhs").mkdir()
        assert read_all(part) == []
        (feeds / "nhs" / "2009-02.jsonl").write_text('{"a": "n"}\n')
        assert [x.file for x in read_all(part)] == ["nhs/2009-02.jsonl"]
    finally:
        part.close()


def test_where_the_kernel_cannot_watch_the_source_polls(tmp_path: Path):
    assert not FeedWatch(tmp_path / "missing").active
