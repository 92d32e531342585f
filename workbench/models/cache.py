"""The workbench's cache folder, the sha256 digests of big files it remembers, and the locks that keep two
processes from filling one cache entry at once."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from ..io import atomic_write_json, sha256_file

try:  # POSIX only; elsewhere conversions are simply not serialised between processes
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]


def cache_home() -> Path:
    """The workbench cache: ``$WORKBENCH_HOME`` if set, else ``~/.cache/workbench``."""
    env = os.environ.get("WORKBENCH_HOME", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "workbench"


def _hash_cache_path() -> Path:
    return cache_home() / "sha256-cache.json"


def _hash_cache() -> dict:
    try:
        data = json.loads(_hash_cache_path().read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _stat_key(path: Path) -> tuple[str, dict]:
    stat = path.stat()
    return str(path.resolve()), {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def cached_sha256(path: Path) -> str | None:
    """The remembered sha256 of ``path`` if its size and mtime are unchanged, without hashing."""
    key, stat = _stat_key(path)
    entry = _hash_cache().get(key)
    if isinstance(entry, dict) and all(entry.get(k) == v for k, v in stat.items()):
        return entry.get("sha256")
    return None


def remember_sha256(path: Path, digest: str) -> None:
    """Remember ``digest`` as the sha256 of ``path`` at its current size and mtime."""
    key, stat = _stat_key(path)
    cache = _hash_cache()
    cache[key] = {**stat, "sha256": digest}
    with contextlib.suppress(OSError):
        atomic_write_json(_hash_cache_path(), cache)


def sha256_of(path: Path) -> str:
    """sha256 of a file, remembered by path + size + mtime so big GGUFs are hashed once."""
    cached = cached_sha256(path)
    if cached:
        return cached
    digest = sha256_file(path)
    remember_sha256(path, digest)
    return digest


@contextlib.contextmanager
def file_lock(name: str) -> Iterator[None]:
    """An exclusive inter-process lock on ``cache_home()/locks/<name>.lock`` (no-op without fcntl)."""
    locks = cache_home() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f"{name}.lock", "a+b") as handle:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
