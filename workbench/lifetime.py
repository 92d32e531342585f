"""Worker processes that end with their parent, on every platform.

A crawl's worker processes (and the trafilatura extractor's) are started by the crawl's process; if that process
is killed (``kill -9``, an out-of-memory kill), nothing tells them, and they would live on holding memory. Each
worker therefore runs :func:`exit_with_parent` first: a daemon thread that ends the worker as soon as its parent
is gone (its parent process id changes: the orphan was adopted by init or a subreaper). Polling keeps it
portable (``prctl(PR_SET_PDEATHSIG)`` is Linux-only and fires when the *thread* that started the worker ends).
"""

from __future__ import annotations

import os
import threading
import time

POLL_SECONDS = 0.5


def exit_with_parent(parent_pid: int, poll_seconds: float = POLL_SECONDS) -> None:
    """End this process (exit status 1, no cleanup: the parent that would use it is gone) once ``parent_pid`` is
    no longer its parent. Call it first thing in a worker process (e.g. as a pool's ``initializer``)."""
    if os.getppid() != parent_pid:
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_seconds)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
