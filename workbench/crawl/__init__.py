"""Crawl stage library: read web archives and text dumps, extract text, identify languages,
deduplicate, and write per-language JSONL corpora.

Main entry points: :func:`run_crawl` and :func:`train_identifier`.
"""

from __future__ import annotations

from .dedup import ExactDeduplicator, normalize_for_dedup
from .extract import decode_html, html_to_text
from .langid import (
    CharNgramIdentifier,
    FastTextIdentifier,
    LanguageIdentifier,
    TargetAwareIdentifier,
    dominant_script,
    dominant_scripts,
    fasttext_label_to_code,
    find_confusables,
    read_seed_dir,
    train_identifier,
)
from .pipeline import run_crawl, split_segments
from .readers import CrawlStats, RawDocument, iter_documents

__all__ = [
    "CharNgramIdentifier",
    "CrawlStats",
    "ExactDeduplicator",
    "FastTextIdentifier",
    "LanguageIdentifier",
    "RawDocument",
    "TargetAwareIdentifier",
    "decode_html",
    "dominant_script",
    "dominant_scripts",
    "fasttext_label_to_code",
    "find_confusables",
    "html_to_text",
    "iter_documents",
    "normalize_for_dedup",
    "read_seed_dir",
    "run_crawl",
    "split_segments",
    "train_identifier",
]
