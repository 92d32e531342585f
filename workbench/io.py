"""Atomic file writes and content fingerprints: nothing half-written is ever visible."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_FULL_HASH_LIMIT = 256 * 1024 * 1024  # above this, files are fingerprinted by size + mtime


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def write_jsonl(path: Path, records: Iterable[dict]) -> int:
    """Atomically write records as JSON lines; returns the number written."""
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))
    return len(lines)


def read_jsonl(path: Path) -> list[dict]:
    """Read JSON lines, skipping a torn last line (e.g. after a crash during append)."""
    out = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def file_fingerprint(path: Path) -> str:
    """sha256 of a file's content (size + mtime for very large files)."""
    path = Path(path)
    stat = path.stat()
    if stat.st_size > _FULL_HASH_LIMIT:
        return f"size={stat.st_size};mtime={stat.st_mtime_ns}"
    return sha256_file(path)


def sha256_file(path: Path) -> str:
    """sha256 of a file's whole content, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def tree_fingerprint(path: Path) -> str:
    """Fingerprint of a file or of every file under a directory (names + contents)."""
    path = Path(path)
    if path.is_file():
        return file_fingerprint(path)
    digest = hashlib.sha256()
    for child in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(child.relative_to(path)).encode())
        digest.update(file_fingerprint(child).encode())
    return digest.hexdigest()


def stable_hash(obj: Any) -> str:
    """sha256 of the canonical JSON form of ``obj``."""
    blob = json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def relpath(path: Path, start: Path) -> str:
    """``path`` relative to ``start`` (artifact records stay valid if the run directory moves)."""
    return os.path.relpath(Path(path).resolve(), Path(start).resolve())
