"""Documents marked bad by a reader: an exclusion list the run's next crawl honours.

Marks live in the run store (``<run>/marked-bad.jsonl``: text, language, source, offset, reason, who,
when). When the file exists, the engine adds it to every crawl stage's ``exclude`` list, so the next
``workbench run`` of that recipe re-crawls without those documents (the file is part of the crawl's
cache key) and everything downstream follows.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import DataError

if TYPE_CHECKING:
    from .recipe import Recipe

MARKS_FILE = "marked-bad.jsonl"
MAX_REASON = 500


def marks_path(run_root: Path) -> Path:
    return Path(run_root) / MARKS_FILE


def mark_bad(run_root: Path, document: dict[str, Any], *, reason: str, reviewer: str = "") -> dict[str, Any]:
    """Append one document (a corpus record with ``text``) to the run's exclusion list; returns the mark."""
    text = document.get("text")
    if not isinstance(text, str) or not text.strip():
        raise DataError("mark: the document has no text")
    mark = {"text": text, "language": document.get("language"), "source": document.get("source"),
            "offset": document.get("offset"), "url": document.get("url"), "reason": str(reason or "")[:MAX_REASON],
            "reviewer": str(reviewer or "")[:64], "time": time.time()}
    path = marks_path(run_root)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(mark, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return mark


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


def with_marks(recipe: Recipe, run_root: Path) -> Recipe:
    """``recipe`` with the run's marks file added to every crawl stage's ``exclude`` (unchanged if none)."""
    path = marks_path(run_root)
    if not path.is_file() or not any(spec.kind == "crawl" for spec in recipe.stages):
        return recipe
    stages = []
    for spec in recipe.stages:
        if spec.kind == "crawl":
            existing = spec.config.exclude
            listed = list(existing) if isinstance(existing, list) else ([existing] if existing else [])
            if path.resolve() not in [Path(p).resolve() for p in listed]:
                spec = spec.model_copy(update={"config": spec.config.model_copy(
                    update={"exclude": [*listed, path.resolve()]})})
        stages.append(spec)
    return recipe.model_copy(update={"stages": stages})


__all__ = ["MARKS_FILE", "load_marks", "mark_bad", "marks_path", "with_marks"]
