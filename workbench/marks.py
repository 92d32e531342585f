"""Documents marked bad by a reader: an exclusion list the run's next crawl honours.

Marks live in the run store (``<run>/marked-bad.jsonl``: id, text, language, source, offset, reason,
who, when). When the file exists, the engine has every crawl stage exclude it (the crawl config says how:
:meth:`~workbench.stages.crawl.CrawlConfig.excluding`), so the next ``workbench run`` of that recipe re-crawls
without those documents (the file is part of the crawl's cache key) and everything downstream follows. A mark
can be taken back (:func:`unmark`): the file is rewritten without it (removed when empty, so the crawl's key is
the unmarked one again) and the removal is logged in ``<run>/marks-removed.jsonl`` (who, when, the mark).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .errors import DataError
from .io import atomic_write_text

if TYPE_CHECKING:
    from .recipe import Recipe

MARKS_FILE = "marked-bad.jsonl"
REMOVED_FILE = "marks-removed.jsonl"
MAX_REASON = 500


def marks_path(run_root: Path) -> Path:
    return Path(run_root) / MARKS_FILE


def mark_bad(run_root: Path, document: dict[str, Any], *, reason: str, reviewer: str = "") -> dict[str, Any]:
    """Append one document (a corpus record with ``text``) to the run's exclusion list; returns the mark."""
    text = document.get("text")
    if not isinstance(text, str) or not text.strip():
        raise DataError("mark: the document has no text")
    mark = {"id": secrets.token_hex(6), "text": text, "language": document.get("language"),
            "source": document.get("source"), "offset": document.get("offset"), "url": document.get("url"),
            "reason": str(reason or "")[:MAX_REASON], "reviewer": str(reviewer or "")[:64], "time": time.time()}
    _append(marks_path(run_root), mark)
    return mark


def mark_id(mark: dict[str, Any]) -> str:
    """A mark's id (marks written before ids existed get one from their text and time)."""
    if isinstance(mark.get("id"), str):
        return mark["id"]
    return hashlib.sha256(f"{mark.get('time')}|{mark.get('text')}".encode()).hexdigest()[:12]


def unmark(run_root: Path, identifier: str, *, reviewer: str = "") -> dict[str, Any]:
    """Take back the mark ``identifier``: the marks file without it, the removal logged; returns the mark."""
    marks = load_marks(run_root)
    removed = next((m for m in marks if mark_id(m) == identifier), None)
    if removed is None:
        raise DataError(f"unmark: no mark {identifier!r} in this run")
    kept = [m for m in marks if m is not removed]
    path = marks_path(run_root)
    if kept:
        atomic_write_text(path, "".join(json.dumps(m, ensure_ascii=False) + "\n" for m in kept))
    else:
        path.unlink()  # no marks: the crawl's cache key is the unmarked one again
    _append(Path(run_root) / REMOVED_FILE, {"mark": removed, "reviewer": str(reviewer or "")[:64],
                                            "time": time.time()})
    return removed


def _append(path: Path, record: dict[str, Any]) -> None:
    """One JSON line appended, flushed and synced."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def load_marks(run_root: Path) -> list[dict[str, Any]]:
    """The run's marks in order (a torn last line skipped)."""
    path = marks_path(run_root)
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


@runtime_checkable
class ExcludesDocuments(Protocol):
    """A stage config that reads documents and can be told to leave some out (the crawl's)."""

    def excluding(self, documents: Path) -> Any: ...


def with_marks(recipe: Recipe, run_root: Path) -> Recipe:
    """``recipe`` with the run's marks file excluded by every stage that reads documents
    (:class:`ExcludesDocuments`); unchanged if the run has no marks."""
    path = marks_path(run_root)
    if not path.is_file():
        return recipe
    stages = [spec.model_copy(update={"config": spec.config.excluding(path)})
              if isinstance(spec.config, ExcludesDocuments) else spec for spec in recipe.stages]
    return recipe.model_copy(update={"stages": stages})


__all__ = ["MARKS_FILE", "load_marks", "mark_bad", "mark_id", "marks_path", "unmark", "with_marks"]
