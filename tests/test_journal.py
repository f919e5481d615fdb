"""The journal on disk: opened by many at once."""

from __future__ import annotations

import threading
from pathlib import Path

from engine.run.journal import Journal


def test_a_new_journal_opened_by_many_at_once_is_never_locked(tmp_path: Path) -> None:
    """Connections opening one new journal at the same moment (check's concurrent runs do)
    all open it: switching it to write-ahead logging is tried again, not failed."""
    failures: list[BaseException] = []
    for round_ in range(60):
        path = tmp_path / f"{round_}.db"
        start = threading.Barrier(8)

        def open_it(path: Path = path, start: threading.Barrier = start) -> None:
            start.wait()
            try:
                Journal(path).close()
            except Exception as exc:  # what the test counts
                failures.append(exc)

        threads = [threading.Thread(target=open_it) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []
