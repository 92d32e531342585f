"""FOCUS-style initialization (Dobler & de Melo, 2023): new rows as sparse combinations of shared rows.

A small fastText model is trained on the target corpus tokenized by the *new* tokenizer, so every new
piece and every piece the two vocabularies share get auxiliary vectors. A new piece's row is the
sum of the base rows of the shared pieces, weighted by the sparsemax of its fastText cosine
similarities to them. Needs ``gensim`` (``pip install 'workbench[focus]'``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer

from ..errors import WorkbenchError
from ..optional import require
from .vocab import VocabPlan


def sparsemax(scores: torch.Tensor) -> torch.Tensor:
    """Sparsemax over the last dimension (Martins & Astudillo, 2016): a projection onto the simplex."""
    z, _ = torch.sort(scores, dim=-1, descending=True)
    k = torch.arange(1, scores.shape[-1] + 1, dtype=scores.dtype)
    cumulative = z.cumsum(dim=-1)
    support = (1 + k * z) > cumulative
    k_max = support.sum(dim=-1, keepdim=True)
    tau = (cumulative.gather(-1, k_max - 1) - 1) / k_max
    return torch.clamp(scores - tau, min=0)


def focus_rows(work: torch.Tensor, plan: VocabPlan, base_spec: dict[str, Any], targets: Sequence[int],
               texts: Sequence[str], *, seed: int = 0) -> torch.Tensor:
    """Rows for ``targets`` (new ids) from ``work`` (a base matrix); see the module docstring."""
    shared, weights = focus_weights(plan, targets, texts, rows=work.shape[0], seed=seed)
    return weights @ work[shared]


def focus_weights(plan: VocabPlan, targets: Sequence[int], texts: Sequence[str], *, rows: int, seed: int = 0,
                  dim: int = 64, epochs: int = 5) -> tuple[list[int], torch.Tensor]:
    """``(shared base ids, weights)``: row ``k`` of ``weights`` (sparsemax, sums to 1) combines the shared
    base rows into the row of ``targets[k]``."""
    FastText = require("gensim.models", "init 'focus' (or choose init: subtoken)").FastText

    tokenizer = Tokenizer.from_str(json.dumps(plan.spec))
    sentences = [encoding.tokens for encoding in tokenizer.encode_batch(list(texts), add_special_tokens=False)]
    model = FastText(sentences=sentences, vector_size=dim, window=5, min_count=1, epochs=epochs, seed=seed,
                     workers=1, min_n=2, max_n=5)
    pieces = {i: p for p, i in plan.spec["model"]["vocab"].items()}
    shared = [(new, old) for new, old in enumerate(plan.sources)
              if old is not None and old < rows and pieces.get(new) in model.wv.key_to_index]
    if not shared:
        raise WorkbenchError("init 'focus': the new vocabulary shares no piece with the base on this corpus; "
                             "choose init: subtoken")
    shared_vectors = torch.nn.functional.normalize(
        torch.from_numpy(np.stack([model.wv[pieces[new]] for new, _ in shared])), dim=1)
    weights = torch.empty(len(targets), len(shared))
    for start in range(0, len(targets), 512):
        chunk = targets[start:start + 512]
        vectors = np.stack([model.wv[plan.pieces[t]] for t in chunk])
        queries = torch.nn.functional.normalize(torch.from_numpy(vectors), dim=1)
        weights[start:start + len(chunk)] = sparsemax(queries @ shared_vectors.T)
    return [old for _, old in shared], weights
