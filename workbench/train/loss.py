"""Causal-LM loss computed on target positions only, with the output layer applied in chunks.

A plain forward materialises logits for every position (batch x length x vocabulary, in float32
for the loss) and autograd keeps them for the backward pass. Here the backbone's hidden states are
gathered at the positions that carry a label and only those rows go through the output layer, a
chunk at a time; when gradients are needed each chunk is recomputed in the backward pass
(activation checkpointing), so the peak holds one chunk of logits, not the whole block's. For a
262k-vocabulary model that is the largest single allocation of a training step.

Packed blocks pass ``position_ids`` that restart at 0 at every document and no attention mask:
transformers then restricts attention to each document (``find_packed_sequence_indices``), so no
token attends across a document boundary.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.checkpoint import checkpoint

IGNORE = -100
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")
CHUNK_LOGIT_ELEMENTS = 1 << 24  # 16M logits (64 MB in float32) per chunk


def supports_fast_loss(model: Any) -> bool:
    """True when the logits are exactly ``output_embeddings(last_hidden_state)``."""
    config = getattr(model, "config", None)
    if config is None or any(getattr(config, name, None) not in (None, 1, 1.0) for name in _LOGIT_TRANSFORMS):
        return False
    try:
        return model.get_decoder() is not None and model.get_output_embeddings() is not None
    except (AttributeError, NotImplementedError):
        return False


def chunk_rows(vocab_size: int) -> int:
    """Rows of hidden states per output-layer chunk, so one chunk holds about 16M logits."""
    return max(16, CHUNK_LOGIT_ELEMENTS // max(vocab_size, 1))


def causal_lm_loss_sum(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                       labels: torch.Tensor, position_ids: torch.Tensor | None = None,
                       chunk_size: int | None = None) -> torch.Tensor:
    """Σ cross-entropy (nats) over positions whose next-token label is not ``-100``.

    ``position_ids`` (with ``attention_mask=None``) marks packed documents: attention stays inside
    each one. ``chunk_size`` rows go through the output layer at a time (default: :func:`chunk_rows`).
    """
    targets = labels[:, 1:]
    keep = targets != IGNORE
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "use_cache": False}
    if position_ids is not None:
        inputs["position_ids"] = position_ids
    if not supports_fast_loss(model):
        logits = model(**inputs).logits[:, :-1]
        return torch.nn.functional.cross_entropy(logits[keep].float(), targets[keep], reduction="sum")
    hidden = model.get_decoder()(**inputs).last_hidden_state
    if bool(keep.all()):  # plain language modelling: no gather needed
        hidden, targets = hidden[:, :-1].flatten(0, 1), targets.flatten()
    else:
        hidden, targets = hidden[:, :-1][keep], targets[keep]
    head = model.get_output_embeddings()
    rows = chunk_size or chunk_rows(head.weight.shape[0])
    recompute = torch.is_grad_enabled() and hidden.requires_grad
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, hidden.shape[0], rows):
        chunk, chunk_targets = hidden[start:start + rows], targets[start:start + rows]
        if recompute:
            total = total + checkpoint(_chunk_loss, head, chunk, chunk_targets, use_reentrant=False)
        else:
            total = total + _chunk_loss(head, chunk, chunk_targets)
    return total


def _chunk_loss(head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(head(hidden).float(), targets, reduction="sum")
