"""The data card of a crawl: what was kept and dropped per language, with samples to audit.

``card.json`` holds the numbers (documents, bytes, characters, words per language; drops by reason;
a histogram of language-identification scores) and random samples of kept and dropped documents
(reservoir sampling, seeded: the same run gives the same samples); ``card.md`` is the same for people.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..io import atomic_write_json, atomic_write_text

BINS = 10  # language-score histogram bins over [0, 1]
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

    def __init__(self, *, seed: int = 0, kept_samples: int = 5, dropped_samples: int = 2) -> None:
        self.rng = random.Random(seed)
        self.kept_samples, self.dropped_samples = kept_samples, dropped_samples
        self.histograms: dict[str, list[int]] = {}
        self.kept: dict[str, _Reservoir] = {}
        self.dropped: dict[tuple[str, str], _Reservoir] = {}

    def keep(self, record: dict[str, Any]) -> None:
        code = record["language"]
        bins = self.histograms.setdefault(code, [0] * BINS)
        bins[min(int(float(record["score"]) * BINS), BINS - 1)] += 1
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
            }
        return {"documents_read": stats["documents_read"], "languages": languages, "dropped": stats["dropped"],
                "near_dedup": stats.get("near_dedup"), "bad_input": stats["bad_input"]["by_kind"],
                "inputs": stats["inputs"], "settings": stats["settings"]}

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
