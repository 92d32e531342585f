"""Causal-LM loss computed on target positions only, with the output layer applied in chunks.

A full forward materialises logits for every position (batch x length x vocabulary); here the
backbone's hidden states are gathered at the positions that carry a label and only those rows go
through the output layer, a chunk at a time. For completion-only fine-tuning that skips the prompt
and padding positions; for large vocabularies it bounds the memory of the logits.
"""

from __future__ import annotations

from typing import Any

import torch

IGNORE = -100
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")


def supports_fast_loss(model: Any) -> bool:
    """True when the logits are exactly ``output_embeddings(last_hidden_state)``."""
    config = getattr(model, "config", None)
    if config is None or any(getattr(config, name, None) not in (None, 1, 1.0) for name in _LOGIT_TRANSFORMS):
        return False
    try:
        return model.get_decoder() is not None and model.get_output_embeddings() is not None
    except (AttributeError, NotImplementedError):
        return False


def causal_lm_loss_sum(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       labels: torch.Tensor, chunk_size: int = 2048) -> torch.Tensor:
    """Σ cross-entropy (nats) over positions whose next-token label is not ``-100``."""
    targets = labels[:, 1:]
    keep = targets != IGNORE
    if not supports_fast_loss(model):
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1]
        return torch.nn.functional.cross_entropy(logits[keep].float(), targets[keep], reduction="sum")
    hidden = model.get_decoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    if bool(keep.all()):  # plain language modelling: no gather needed
        hidden, targets = hidden[:, :-1].flatten(0, 1), targets.flatten()
    else:
        hidden, targets = hidden[:, :-1][keep], targets[keep]
    head = model.get_output_embeddings()
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, hidden.shape[0], chunk_size):
        logits = head(hidden[start:start + chunk_size]).float()
        total = total + torch.nn.functional.cross_entropy(logits, targets[start:start + chunk_size],
                                                          reduction="sum")
    return total
