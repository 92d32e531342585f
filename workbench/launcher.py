"""Recipes run in a background process, one at a time per machine (what the app's Runs tab uses).

:func:`start` spawns ``python -m workbench.cli run RECIPE --workspace WS --no-progress`` in its own
session, its output going to a log file. The machine-wide lock (``$WORKBENCH_HOME/launcher.lock``) is
taken by the parent and inherited by the child, so it is held exactly as long as the run lives, even
if the app exits or crashes. The job's description (pid, command, log) is a JSON file under
``<root>/.workbench/``: nothing is kept in memory, any app process can follow or stop it. Stopping
sends SIGTERM to the run's process group (SIGKILL after a grace period); a stopped run resumes from its
last finished stage or checkpoint when started again.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import RunError
from .io import atomic_write_json
from .models import cache_home
from .store import lock_held

STATE_DIR = ".workbench"
JOB_FILE = "job.json"


def _lock_path() -> Path:
    path = cache_home() / "launcher.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def command(recipe: Path, workspace: Path, device: str | None = None) -> list[str]:
    """The CLI line a background run executes (also what "show command" prints)."""
    line = [sys.executable, "-m", "workbench.cli", "run", str(recipe), "--workspace", str(workspace), "--no-progress"]
    return line + (["--device", device] if device else [])


def shell_line(recipe: Path, workspace: Path, device: str | None = None) -> str:
    """:func:`command` as a user would type it (``workbench run ...``)."""
    line = ["workbench", *command(recipe, workspace, device)[3:]]
    return shlex.join(line)


@dataclass(frozen=True)
class Job:
    """A background run as recorded on disk."""

    pid: int
    recipe: str
    workspace: str
    command: list[str]
    log: str
    started: float

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        try:  # a finished child not yet reaped by its parent is a zombie: not running
            with open(f"/proc/{self.pid}/stat", encoding="utf-8") as handle:
                return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return True


def machine_busy() -> bool:
    """Whether a background run holds the machine lock (this process or any other)."""
    return lock_held(_lock_path())


def start(recipe: Path, root: Path, workspace: Path, *, device: str | None = None,
          env: dict[str, str] | None = None) -> Job:
    """Start ``recipe`` in the background (cwd ``root``); :class:`RunError` if a run is already going."""
    state = Path(root) / STATE_DIR
    (state / "logs").mkdir(parents=True, exist_ok=True)
    handle = open(_lock_path(), "a")  # noqa: SIM115 - its descriptor is handed to the child
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            job = current(root)
            where = f" ({job.recipe}, pid {job.pid})" if job and job.alive() else " (started elsewhere on this machine)"
            raise RunError(f"a recipe is already running{where}; stop it or wait for it to finish") from None
        log = state / "logs" / f"{time.strftime('%Y%m%d-%H%M%S')}-{Path(recipe).stem}.log"
        line = command(recipe, workspace, device)
        with open(log, "ab") as out:
            process = subprocess.Popen(
                line, cwd=root, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, pass_fds=(handle.fileno(),), env={**os.environ, **(env or {})})
    finally:
        handle.close()  # the child holds the lock from here on
    job = Job(process.pid, str(recipe), str(workspace), line, str(log), time.time())
    atomic_write_json(state / JOB_FILE, job.__dict__)
    return job


def current(root: Path) -> Job | None:
    """The last job started from ``root`` (running or not), or None."""
    path = Path(root) / STATE_DIR / JOB_FILE
    if not path.is_file():
        return None

    try:
        return Job(**json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, TypeError):
        return None


def stop(root: Path, grace: float = 10.0) -> str:
    """Stop the running job of ``root``: SIGTERM to its process group, SIGKILL after ``grace`` seconds."""
    job = current(root)
    if job is None or not job.alive():
        return "nothing is running"
    try:
        os.killpg(job.pid, signal.SIGTERM)
    except ProcessLookupError:
        return "it had already finished"
    deadline = time.time() + grace
    while job.alive() and time.time() < deadline:
        time.sleep(0.1)
    if job.alive():
        os.killpg(job.pid, signal.SIGKILL)
    return f"stopped {Path(job.recipe).name} (pid {job.pid}); starting it again resumes it"


def tail(path: str | Path, max_bytes: int = 20000) -> str:
    """The end of a log file (whole lines)."""
    path = Path(path)
    if not path.is_file():
        return ""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - max_bytes))
        data = handle.read()
    text = data.decode("utf-8", errors="replace")
    return text.split("\n", 1)[1] if size > max_bytes and "\n" in text else text


def status(root: Path) -> dict[str, Any]:
    """``{"running": bool, "job": Job | None, "log": tail}`` for the Runs tab."""
    job = current(root)
    return {"running": bool(job and job.alive()), "job": job, "log": tail(job.log) if job else ""}


__all__ = ["Job", "command", "current", "machine_busy", "shell_line", "start", "status", "stop", "tail"]
