"""Per-language bits per byte on held-out text while a model trains: forgetting, visible as it happens.

Each curve point scores every held-out set with the scorer's definition of bits per byte
(:func:`workbench.evaluate.lm.score_texts`), in windows of ``max_length`` tokens that do not
overlap (a long document's later windows start without earlier context: cheap, and the same at
every point). Points are taken before the first step, every ``every`` steps and after the last one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class HeldOut:
    """Texts of one language kept out of training, and where they came from."""

    texts: list[str]
    source: str  # "crawl" (held-out documents) or "eval" (the recipe's LM evaluation set)


def split_held_out(texts: list[str], documents: int, max_bytes: int, seed: int) -> tuple[list[str], list[str]]:
    """(training texts, held-out texts): up to ``documents`` seeded-random documents, at most
    ``max_bytes`` in total, never more than a tenth of the corpus, never its only document."""
    limit = min(documents, len(texts) // 10)
    if limit <= 0:
        return texts, []
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    held, size = set(), 0
    for index in order:
        if len(held) >= limit:
            break
        length = len(texts[index].encode("utf-8"))
        if held and size + length > max_bytes:
            continue
        held.add(index)
        size += length
    return [t for i, t in enumerate(texts) if i not in held], [texts[i] for i in sorted(held)]


class CurveTracker:
    """A training-loop callback that scores the held-out sets every ``every`` steps."""

    def __init__(self, tokenizer: Any, sets: dict[str, HeldOut], *, every: int, total_steps: int,
                 max_length: int = 1024, batch_size: int = 8, log: Any = None) -> None:
        self.tokenizer, self.sets, self.every, self.total_steps = tokenizer, sets, every, total_steps
        self.max_length, self.batch_size = max_length, batch_size
        self.log = log or (lambda *a, **k: None)
        self.points: list[dict[str, Any]] = []

    def measure(self, step: int, model: torch.nn.Module, tokens: int) -> dict[str, Any]:
        """Score every set now and append the point ``{step, tokens, bpb: {language: value}}``."""
        from ..evaluate.lm import score_texts

        bpb = {}
        for code, held in self.sets.items():
            score = score_texts(model, self.tokenizer, held.texts, batch_size=self.batch_size,
                                max_length=self.max_length, stride=self.max_length - 1)  # no re-scoring
            bpb[code] = round(score.bits_per_byte, 5)
        point = {"step": step, "tokens": tokens, "bpb": bpb}
        self.points.append(point)
        self.log("curve_point", optimizer_step=step, **{f"bpb_{k}": v for k, v in bpb.items()})
        return point

    def on_step(self, step: int, model: torch.nn.Module, state: dict[str, Any]) -> None:
        if self.sets and (step == self.total_steps or (self.every and step % self.every == 0)):
            self.measure(step, model, state["tokens"])

    def state_dict(self) -> dict[str, Any]:
        return {"points": self.points}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.points = list(state["points"])

    def summary(self) -> dict[str, Any]:
        """The curves and, per language, the change from the first point to the last."""
        sets = {code: {"source": h.source, "texts": len(h.texts),
                       "bytes": sum(len(t.encode("utf-8")) for t in h.texts)} for code, h in self.sets.items()}
        change = {}
        if len(self.points) >= 2:
            first, last = self.points[0]["bpb"], self.points[-1]["bpb"]
            change = {code: round(last[code] - first[code], 5) for code in first}
        return {"points": self.points, "sets": sets, "change": change}
