"""Per-language bits per byte on held-out text while a model trains: forgetting, visible as it happens.

Each curve point scores every held-out set with the scorer's definition of bits per byte
(:func:`workbench.evaluate.lm.score_texts`), in windows of ``max_length`` tokens that do not
overlap (a long document's later windows start without earlier context: cheap, and the same at
every point). Points are taken before the first step, every ``every`` steps and after the last one.

The held-out texts are tokenized and cut into windows once. When the model keeps packed documents
apart (:func:`workbench.train.loss.attention_stays_in_documents`, checked once), the windows are
packed first-fit decreasing into rows of ``max_length`` with restarting ``position_ids``, like the
training blocks, so no padding is computed; otherwise they run right-padded, longest first. Each
point runs them through the training loss's chunked output layer
(:func:`workbench.train.loss.causal_lm_loss_sum`) under ``torch.inference_mode`` (and the training's
autocast, when it mixes precisions), so no batch's full-vocabulary logits are ever held.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

import torch

from ..evaluate.lm import _windows, encode_for_scoring
from .loop import autocast
from .loss import IGNORE, attention_stays_in_documents, causal_lm_loss_sum


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
                 max_length: int = 1024, batch_size: int = 8, log: Any = None,
                 precision: torch.dtype | None = None) -> None:
        self.tokenizer, self.sets, self.every, self.total_steps = tokenizer, sets, every, total_steps
        self.precision = precision  # autocast dtype, as the training steps (None: the weights' own)
        self.max_length, self.batch_size = max_length, batch_size
        self.log = log or (lambda *a, **k: None)
        self.points: list[dict[str, Any]] = []
        self._prepared: dict[str, tuple[list[tuple[torch.Tensor | None, ...]], int]] | None = None
        self._packed: bool | None = None  # pack windows into rows (when the model keeps them apart)

    def measure(self, step: int, model: torch.nn.Module, tokens: int) -> dict[str, Any]:
        """Score every set now and append the point ``{step, tokens, bpb: {language: value}}``."""
        bpb = {}
        was_training = model.training
        if self._packed is None:
            self._packed = attention_stays_in_documents(model)
        model.eval()
        try:
            for code, (batches, size) in self._batches(self._packed).items():
                bits = math.fsum(_batch_bits(model, batch, self.precision) for batch in batches)
                bpb[code] = round(bits / size, 5) if size else math.nan
        finally:
            model.train(was_training)
        point = {"step": step, "tokens": tokens, "bpb": bpb}
        self.points.append(point)
        self.log("curve_point", optimizer_step=step, **{f"bpb_{k}": v for k, v in bpb.items()})
        return point

    def _batches(self, packed: bool) -> dict[str, tuple[list[tuple[torch.Tensor | None, ...]], int]]:
        """Per language: the batches of its windows (built once) and the set's UTF-8 bytes."""
        if self._prepared is None:
            pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
            self._prepared = {}
            for code, held in self.sets.items():
                sequences, _ = encode_for_scoring(self.tokenizer, held.texts)
                windows = [w for seq in sequences for w in _windows(seq, self.max_length, self.max_length - 1)]
                windows.sort(key=lambda w: len(w.ids), reverse=True)
                rows = _first_fit(windows, self.max_length) if packed else [[w] for w in windows]
                batches = [_batch(rows[i:i + self.batch_size], pad, packed)
                           for i in range(0, len(rows), self.batch_size)]
                self._prepared[code] = (batches, sum(len(t.encode("utf-8")) for t in held.texts))
        return self._prepared

    def on_start(self, model: torch.nn.Module, state: dict[str, Any]) -> None:
        """The point before training (a resumed run restores its points from the checkpoint instead)."""
        if self.sets:
            self.measure(0, model, 0)

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


def _first_fit(windows: list[Any], width: int) -> list[list[Any]]:
    """Windows (longest first) placed first-fit into rows of at most ``width`` tokens."""
    rows: list[list[Any]] = []
    room: list[int] = []
    for window in windows:
        size = len(window.ids)
        row = next((i for i, free in enumerate(room) if size <= free), None)
        if row is None:
            rows.append([window])
            room.append(width - size)
        else:
            rows[row].append(window)
            room[row] -= size
    return rows


def _batch(rows: list[list[Any]], pad_id: int, packed: bool) -> tuple[torch.Tensor | None, ...]:
    """(input ids, attention mask, labels, position ids) of rows of windows. Labels are the scored
    tokens (the last ``n_scored`` of each window), ``-100`` elsewhere. Packed: position ids restart at
    every window and the padding at a row's end is a segment of its own, no mask. Otherwise one
    right-padded window per row, with a mask only when something is padded."""
    width = max(sum(len(w.ids) for w in row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.ones((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        at = 0
        for window in row:
            end = at + len(window.ids)
            ids[r, at:end] = torch.tensor(window.ids)
            positions[r, at:end] = torch.arange(end - at)
            labels[r, end - window.n_scored:end] = ids[r, end - window.n_scored:end]
            at = end
        positions[r, at:] = torch.arange(width - at)
        mask[r, at:] = 0
    if packed:
        return ids, None, labels, positions
    return ids, (None if bool(mask.all()) else mask), labels, None


def _batch_bits(model: torch.nn.Module, batch: tuple[torch.Tensor | None, ...],
                precision: torch.dtype | None = None) -> float:
    """Σ −log₂ p of a batch's scored tokens (float32 log-softmax, as the scorer)."""
    device = next(model.parameters()).device
    ids, mask, labels, positions = (t.to(device) if t is not None else None for t in batch)
    with torch.inference_mode(), autocast(device, precision):
        nats = causal_lm_loss_sum(model, ids, mask, labels, position_ids=positions)
    return float(nats) / math.log(2.0)
