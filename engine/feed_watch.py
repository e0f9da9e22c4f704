"""Following: whether anything in the feeds folder changed since the source last looked.

Polling alone makes a quiet line wait half a poll interval on average before it is even read
(25 ms of a 50 ms interval), and polling faster costs a listing of every feed folder and a `stat`
of every feed file each time. On Linux the kernel says when a file in a watched folder is
written to, created or moved in (inotify): the source then looks every few milliseconds at a
file descriptor, which costs next to nothing, and reads the files only when one changed. It still
reads them every poll interval whatever the watch says, so a change the kernel does not report
(a network file system, a folder made before its watch was added) is read at most that late.
"""

from __future__ import annotations

from pathlib import Path

from inotify_simple import INotify, flags

_FILE_CHANGES = flags.MODIFY | flags.CLOSE_WRITE | flags.CREATE | flags.MOVED_TO
_FOLDER_CHANGES = flags.CREATE | flags.MOVED_TO


class FeedWatch:
    """Changes to the files of every folder of `feeds_dir` (and folders added to it). Where the
    kernel cannot watch (not Linux, or its limit of watches reached) `active` is False and
    `changed()` always says True: the source polls as it did without a watch."""

    def __init__(self, feeds_dir: Path) -> None:
        self._feeds_dir = feeds_dir
        try:
            self._inotify: INotify | None = INotify(nonblocking=True)
            self._root = self._inotify.add_watch(feeds_dir, _FOLDER_CHANGES)
            self._watch_folders()
        except OSError:  # no inotify here, or no watch left: poll instead
            self.close()

    @property
    def active(self) -> bool:
        return self._inotify is not None

    def changed(self) -> bool:
        """Whether something changed since the last call (True when not `active`)."""
        if self._inotify is None:
            return True
        events = self._inotify.read(timeout=0)
        if any(event.wd == self._root for event in events):
            try:
                self._watch_folders()  # a feed folder added: watch its files too
            except OSError:
                self.close()
        return bool(events)

    def close(self) -> None:
        if getattr(self, "_inotify", None) is not None:
            self._inotify.close()
        self._inotify = None

    def _watch_folders(self) -> None:
        for folder in self._feeds_dir.iterdir():
            if folder.is_dir():  # adding a watch again is a no-op
                self._inotify.add_watch(folder, _FILE_CHANGES)
