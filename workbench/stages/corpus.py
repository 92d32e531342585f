"""Reading a crawl artifact's per-language corpora: what the stages after a crawl (tokenizer, cpt) and the
scorer's n-gram floor need, without the crawl's own libraries (archive readers, extractors)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..io import read_jsonl
from .base import Artifact


def corpus_files(artifact: Artifact, languages: list[str] | None = None) -> list[Path]:
    """The per-language corpus files of a crawl artifact (all languages, or those given)."""
    corpus = artifact.record.get("outputs", {}).get("corpus", {})
    return [artifact.path / rel for code, rel in corpus.items() if languages is None or code in languages]


def corpus_texts(artifact_path: Path, record: dict[str, Any], language: str) -> list[str]:
    """All texts of one language in a crawl artifact (empty if the crawl found none)."""
    rel = record.get("outputs", {}).get("corpus", {}).get(language)
    return [r["text"] for r in read_jsonl(artifact_path / rel)] if rel else []
