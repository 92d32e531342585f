"""The data card of a crawl: what was kept and dropped per language, with samples to audit.

``card.json`` holds the numbers (documents, bytes, characters, words per language; drops by reason;
a histogram of language-identification scores) and random samples of kept and dropped documents
(reservoir sampling, seeded: the same run gives the same samples); ``card.md`` is the same for people.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..io import atomic_write_json, atomic_write_text

BINS = 10  # language-score histogram bins over [0, 1]
SOURCES_LISTED = 10  # input files listed per language (those it has the most characters from)
TARGET_FILE_SHARE = 0.5  # a language with more of its corpus from the target's own files is warned about
SAMPLE_CHARS = 400


@dataclass
class _Reservoir:
    size: int
    rng: random.Random
    seen: int = 0
    items: list[Any] = field(default_factory=list)

    def offer(self, item: Any) -> None:
        self.seen += 1
        if len(self.items) < self.size:
            self.items.append(item)
            return
        slot = self.rng.randrange(self.seen)
        if slot < self.size:
            self.items[slot] = item


class CardBuilder:
    """Collects histograms and samples while a crawl runs; :meth:`write` makes the card."""

    def __init__(self, *, seed: int = 0, kept_samples: int = 5, dropped_samples: int = 2,
                 target: str | None = None) -> None:
        self.rng = random.Random(seed)
        self.target = target  # the language the crawl is for: its own input files are watched (source_warnings)
        self.sources: dict[str, Counter] = {}  # language -> input file -> characters kept
        self.kept_samples, self.dropped_samples = kept_samples, dropped_samples
        self.histograms: dict[str, list[int]] = {}
        self.kept: dict[str, _Reservoir] = {}
        self.dropped: dict[tuple[str, str], _Reservoir] = {}

    def keep(self, record: dict[str, Any]) -> None:
        code = record["language"]
        bins = self.histograms.setdefault(code, [0] * BINS)
        bins[min(int(float(record["score"]) * BINS), BINS - 1)] += 1
        self.sources.setdefault(code, Counter())[record["source"]] += len(record["text"])
        sample = {k: record[k] for k in ("source", "offset", "url", "score")}
        sample["text"] = record["text"][:SAMPLE_CHARS]
        self.kept.setdefault(code, _Reservoir(self.kept_samples, self.rng)).offer(sample)

    def drop(self, language: str, reason: str, text: str) -> None:
        key = (language, reason)
        self.dropped.setdefault(key, _Reservoir(self.dropped_samples, self.rng)).offer(text[:SAMPLE_CHARS])

    def card(self, stats: dict[str, Any]) -> dict[str, Any]:
        languages = {}
        for code, sizes in stats["languages"].items():
            languages[code] = {
                **sizes,
                "score_histogram": {"bins": [round(i / BINS, 2) for i in range(BINS + 1)],
                                    "counts": self.histograms.get(code, [0] * BINS)},
                "samples": self.kept[code].items if code in self.kept else [],
                "dropped_samples": {reason: r.items for (c, reason), r in sorted(self.dropped.items()) if c == code},
                "sources": dict(self.sources.get(code, Counter()).most_common(SOURCES_LISTED)),
            }
        return {"documents_read": stats["documents_read"], "languages": languages, "warnings": self.source_warnings(),
                "dropped": stats["dropped"],
                "near_dedup": stats.get("near_dedup"), "bad_input": stats["bad_input"]["by_kind"],
                "charset_guessed": stats.get("charset_guessed", {}),
                "replacement_characters": stats.get("replacement_characters", {}),
                "inputs": stats["inputs"], "settings": stats["settings"]}

    def source_warnings(self) -> list[str]:
        """A warning for each other language whose corpus is mostly (over ``TARGET_FILE_SHARE`` of its characters)
        text from the target's own input files (files whose kept text is mostly the target): text of the target
        that the identifier gave a neighbour, e.g. a Hindi replay corpus filled from the target's files."""
        if self.target is None:
            return []
        target_files = {source for source in {s for counts in self.sources.values() for s in counts}
                        if self._majority_language(source) == self.target}
        warnings = []
        for code, counts in sorted(self.sources.items()):
            total = sum(counts.values())
            from_target = sum(n for source, n in counts.items() if source in target_files)
            if code != self.target and total and from_target > TARGET_FILE_SHARE * total:
                warnings.append(f"{from_target / total:.0%} of the {code} corpus ({from_target} of {total} characters) "
                                f"comes from input files that are mostly {self.target} "
                                f"({', '.join(sorted(Path(s).name for s in target_files)[:3])}): likely {self.target} "
                                f"text identified as {code}; check the language identifier and its seed texts")
        return warnings

    def _majority_language(self, source: str) -> str | None:
        kept = {code: counts[source] for code, counts in self.sources.items() if counts.get(source)}
        return max(kept, key=kept.__getitem__) if kept else None

    def write(self, out_dir: Path, stats: dict[str, Any]) -> dict[str, Any]:
        card = self.card(stats)
        atomic_write_json(Path(out_dir) / "card.json", card)
        atomic_write_text(Path(out_dir) / "card.md", render_markdown(card))
        return card


def _histogram_bar(counts: list[int]) -> str:
    blocks = " ▁▂▃▄▅▆▇█"
    top = max(counts) or 1
    return "".join(blocks[round(c / top * (len(blocks) - 1))] for c in counts)


def render_markdown(card: dict[str, Any]) -> str:
    """The card as Markdown: a size table, drops by reason, score histograms and samples."""
    lines = ["# Data card", "", f"Documents read: {card['documents_read']}", "",
             "| language | documents | words | characters | bytes | scores 0 → 1 |", "|---|---:|---:|---:|---:|---|"]
    for code, entry in card["languages"].items():
        lines.append(f"| {code} | {entry['docs']} | {entry['words']} | {entry['chars']} | {entry['bytes']} | "
                     f"`{_histogram_bar(entry['score_histogram']['counts'])}` |")
    lines += ["", "## Dropped", "", "| reason | count |", "|---|---:|"]
    lines += [f"| {reason} | {count} |" for reason, count in card["dropped"].items() if count]
    if card["bad_input"]:
        lines += ["", "## Bad input (skipped)", "", *[f"- {kind}: {n}" for kind, n in card["bad_input"].items()]]
    lines += _charset_lines(card)
    if card.get("warnings"):
        lines += ["", "## Warnings", "", *[f"- {warning}" for warning in card["warnings"]]]
    for code, entry in card["languages"].items():
        if not entry["samples"] and not entry["dropped_samples"]:
            continue
        lines += ["", f"## Samples: {code}", ""]
        for sample in entry["samples"]:
            where = sample.get("url") or f"{sample['source']}@{sample['offset']}"
            lines += [f"- ({sample['score']:.2f}, {where}) {' '.join(sample['text'].split())}"]
        for reason, texts in entry["dropped_samples"].items():
            lines += [f"- dropped ({reason}): {' '.join(text.split())}" for text in texts]
    return "\n".join(lines) + "\n"


def _charset_lines(card: dict[str, Any]) -> list[str]:
    """The card's lines on decoding: code pages guessed (no charset declared, not UTF-8), pages left with U+FFFD."""
    guessed, replaced = card.get("charset_guessed") or {}, card.get("replacement_characters") or {}
    if not guessed and not replaced.get("pages"):
        return []
    lines = ["", "## Charsets", ""]
    if guessed:
        lines.append("- guessed (no charset declared, not UTF-8): "
                     + ", ".join(f"{codec}: {n}" for codec, n in guessed.items()))
    if replaced.get("pages"):
        lines.append(f"- pages with U+FFFD replacement characters: {replaced['pages']} "
                     f"({replaced.get('characters', 0)} characters)")
    return lines
