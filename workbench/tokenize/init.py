"""Rows for a new vocabulary: kept rows copied, new rows initialized from the base model's own matrices.

Methods for new pieces (each applied to the input and, when untied, separately to the output matrix):

- ``mean``: the mean of all base rows;
- ``subtoken`` (default): the piece's bytes re-tokenized by the base tokenizer, rows averaged with
  weights proportional to each part's byte length (partial-UTF-8 pieces get their own bytes' rows);
- ``hybrid``: ``subtoken`` mixed with its top-k nearest base rows in the model's own embedding space
  (cosine, softmax-weighted), TokenAdapt-style;
- ``focus``: FOCUS-style: a weighted sum (sparsemax of fastText similarities) of the rows of base pieces
  the new vocabulary shares; the fastText model is trained on the target corpus (needs ``gensim``);
- ``random``: normal rows with the base rows' scale (a baseline for benchmarks; never a good idea).

Decomposition-based rows are then pulled towards the mean row by ``shrink`` (default 0.1): in a tied
head a new row competes with its own parts for probability mass, and a little shrinkage makes it
compete less on text it does not belong to (measured in ``bench/transplant.py``: SmolLM2 extend, FLORES
srd 0.860x -> 0.846x of base bits per byte, English 1.012x -> 1.006x). Padding rows get the mean row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .focus import focus_rows
from .pieces import is_byte_level_spec, piece_bytes
from .vocab import VocabPlan, base_model_tokenizer, decompose

METHODS = ("subtoken", "hybrid", "mean", "focus", "random")


@torch.no_grad()
def build_matrix(base: torch.Tensor, plan: VocabPlan, base_spec: dict[str, Any], method: str, *,
                 neighbours: int = 8, mix: float = 0.3, temperature: float = 0.05, shrink: float = 0.1,
                 focus_texts: Sequence[str] = (), seed: int = 0, exclude: Sequence[int] = ()) -> torch.Tensor:
    """The new matrix (``plan.rows`` × hidden) for one base embedding matrix (input or output).

    ``exclude``: base ids never used as neighbours or in the mean (special tokens, padding rows).
    """
    if method not in METHODS:
        raise ValueError(f"unknown initialization '{method}'; choose one of {', '.join(METHODS)}")
    work = base.float()
    ordinary = torch.ones(work.shape[0], dtype=torch.bool)
    ordinary[[i for i in exclude if i < work.shape[0]]] = False
    mean = work[ordinary].mean(dim=0)
    out = mean.repeat(plan.rows, 1)
    kept = [(new, old) for new, old in enumerate(plan.sources) if old is not None]
    if kept:
        new_ids, old_ids = zip(*kept, strict=True)
        out[list(new_ids)] = work[list(old_ids)]
    targets = sorted(plan.pieces)
    if targets and method != "mean":
        out[targets] = _new_rows(work, ordinary, plan, base_spec, method, targets, neighbours=neighbours,
                                 mix=mix, temperature=temperature, focus_texts=focus_texts, seed=seed)
        if method != "random":
            out[targets] = (1 - shrink) * out[targets] + shrink * mean
    return out.to(base.dtype)


def decomposition(plan: VocabPlan, base_spec: dict[str, Any],
                  targets: Sequence[int]) -> list[tuple[list[int], list[float]]]:
    """For each target row: the base ids covering the piece's bytes and their byte-length weights."""
    base = base_model_tokenizer(base_spec)
    byte_level = is_byte_level_spec(base_spec)
    pieces = {i: p for p, i in base_spec["model"]["vocab"].items()}
    result = []
    for row in targets:
        parts = decompose(base, plan.pieces[row])
        weights = [float(max(len(piece_bytes(pieces.get(i, ""), byte_level)), 1)) for i in parts]
        total = sum(weights) or 1.0
        result.append((parts, [w / total for w in weights]))
    return result


def _new_rows(work: torch.Tensor, ordinary: torch.Tensor, plan: VocabPlan, base_spec: dict[str, Any],
              method: str, targets: list[int], *, neighbours: int, mix: float, temperature: float,
              focus_texts: Sequence[str], seed: int) -> torch.Tensor:
    if method == "random":
        generator = torch.Generator().manual_seed(seed)
        std = work[ordinary].std(dim=0)
        return torch.randn(len(targets), work.shape[1], generator=generator) * std + work[ordinary].mean(0)
    if method == "focus":
        return focus_rows(work, plan, base_spec, targets, focus_texts, seed=seed)
    rows = torch.zeros(len(targets), work.shape[1])
    mean = work[ordinary].mean(dim=0)
    for k, (parts, weights) in enumerate(decomposition(plan, base_spec, targets)):
        valid = [(i, w) for i, w in zip(parts, weights, strict=True) if i < work.shape[0]]
        if valid:
            ids, ws = zip(*valid, strict=True)
            rows[k] = (torch.tensor(ws).unsqueeze(1) * work[list(ids)]).sum(0) / sum(ws)
        else:
            rows[k] = mean
    if method == "hybrid":
        rows = (1 - mix) * rows + mix * nearest_neighbour_rows(work, ordinary, rows, neighbours, temperature)
    return rows


def nearest_neighbour_rows(work: torch.Tensor, ordinary: torch.Tensor, queries: torch.Tensor, k: int,
                           temperature: float, chunk: int = 512) -> torch.Tensor:
    """Softmax(cosine / temperature)-weighted mean of each query's ``k`` nearest ordinary base rows."""
    candidates = torch.nn.functional.normalize(work[ordinary], dim=1)
    raw = work[ordinary]
    out = torch.empty_like(queries)
    for start in range(0, queries.shape[0], chunk):
        q = torch.nn.functional.normalize(queries[start:start + chunk], dim=1)
        sims, index = (q @ candidates.T).topk(min(k, candidates.shape[0]), dim=1)
        weights = torch.softmax(sims / temperature, dim=1)
        out[start:start + chunk] = torch.einsum("nk,nkd->nd", weights, raw[index])
    return out
