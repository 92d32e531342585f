"""Causal-LM loss computed on target positions only, with the output layer applied in chunks.

A plain forward materialises logits for every position (batch x length x vocabulary, in float32
for the loss) and autograd keeps them for the backward pass. Here the backbone's hidden states are
gathered at the positions that carry a label and only those rows go through the output layer, a
chunk at a time. When training, a plain linear output layer goes through a fused linear
cross-entropy: each chunk's gradients (softmax − one-hot, two matmuls) are computed in the forward
pass, so the peak holds one chunk of logits, not the batch's, and nothing is recomputed (under bf16
autocast it goes through vocabulary blocks instead, recomputing each block's logits once). Another
output layer (a peft wrapper, say) keeps its chunks' logits for the backward pass up to 256 MB in
all and beyond that recomputes each chunk (activation checkpointing). For a
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
KEPT_LOGIT_ELEMENTS = 1 << 26  # up to 64M logits (256 MB) may be kept for the backward pass; beyond, recompute


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
    if torch.is_grad_enabled() and hidden.requires_grad and _plain_linear(head):
        return _FusedLinearCrossEntropy.apply(hidden, head.weight, targets, rows)
    recompute = torch.is_grad_enabled() and hidden.requires_grad and (
        hidden.shape[0] * head.weight.shape[0] > KEPT_LOGIT_ELEMENTS)
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, hidden.shape[0], rows):
        chunk, chunk_targets = hidden[start:start + rows], targets[start:start + rows]
        if recompute:
            total = total + checkpoint(_chunk_loss, head, chunk, chunk_targets, use_reentrant=False)
        else:
            total = total + _chunk_loss(head, chunk, chunk_targets)
    return total


def _plain_linear(head: torch.nn.Module) -> bool:
    return type(head) is torch.nn.Linear and head.bias is None and head.weight.is_floating_point()


class _FusedLinearCrossEntropy(torch.autograd.Function):
    """Σ cross-entropy of ``hidden @ weight.T`` whose gradients are computed in the forward pass (softmax −
    one-hot, then two matmuls), so no full logits outlive their block and nothing is recomputed in the
    backward pass (the approach of Liger's fused linear cross-entropy).

    In float32 the rows go through a chunk at a time and the weight gradient accumulates in place (GEMM
    with beta=1). Under autocast (bf16 matmuls) the vocabulary goes through a block at a time instead
    (:func:`_vocabulary_blocks`): a low-precision product cannot accumulate into the float32 weight
    gradient in place, and adding a whole-vocabulary product per row chunk costs more than the matmuls."""

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                rows: int) -> torch.Tensor:
        device = hidden.device.type
        low = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None  # mixed precision
        if low is not None:
            total, grad_hidden, grad_weight = _vocabulary_blocks(hidden, weight, targets, low,
                                                                 ctx.needs_input_grad[1])
        else:
            total, grad_hidden, grad_weight = _row_chunks(hidden, weight, targets, rows, ctx.needs_input_grad[1])
        ctx.save_for_backward(grad_hidden, grad_weight if grad_weight is not None else torch.empty(0))
        ctx.has_weight_grad = grad_weight is not None
        return total

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        """Scales the stored gradients in place (no second vocabulary-sized copy at the peak): one backward
        pass per forward, as the training loop does."""
        if getattr(ctx, "consumed", False):
            raise RuntimeError("the fused cross-entropy scales its stored gradients in place: run backward once per "
                               "forward (retain_graph=True with a second backward is not supported)")
        ctx.consumed = True
        grad_hidden, grad_weight = ctx.saved_tensors
        weight_grad = grad_weight.mul_(grad_output).to(grad_hidden.dtype) if ctx.has_weight_grad else None
        return grad_hidden.mul_(grad_output.to(grad_hidden.dtype)), weight_grad, None, None


Gradients = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]


def _row_chunks(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, rows: int,
                weight_grad: bool) -> Gradients:
    """(loss, grad of hidden, grad of weight), ``rows`` rows of logits at a time, all in the weights' dtype."""
    total = torch.zeros((), dtype=torch.float32, device=hidden.device)
    grad_hidden = torch.empty_like(hidden)
    grad_weight = torch.zeros_like(weight, dtype=torch.float32) if weight_grad else None
    for start in range(0, hidden.shape[0], rows):
        chunk, chunk_targets = hidden[start:start + rows], targets[start:start + rows]
        logits = (chunk @ weight.t()).float()
        lse = torch.logsumexp(logits, dim=-1)
        total += (lse - logits.gather(1, chunk_targets[:, None]).squeeze(1)).sum()
        probs = logits.sub_(lse[:, None]).exp_()  # softmax, in place
        probs[torch.arange(len(chunk_targets), device=probs.device), chunk_targets] -= 1.0
        grad_logits = probs.to(hidden.dtype)
        grad_hidden[start:start + rows] = grad_logits @ weight
        if grad_weight is not None:
            grad_weight.addmm_(grad_logits.t().float(), chunk.float())
    return total, grad_hidden, grad_weight


def _vocabulary_blocks(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, low: torch.dtype,
                       weight_grad: bool) -> Gradients:
    """(loss, grad of hidden, grad of weight) with the matmuls in ``low`` and everything else in float32, a
    block of vocabulary columns at a time (at most ``CHUNK_LOGIT_ELEMENTS`` logits). A first pass gets each
    row's log-sum-exp (online, block by block) and target logit; a second recomputes each block's logits
    and writes that block's weight gradient once (float32), adding its share to the hidden gradient."""
    n, vocab = hidden.shape[0], weight.shape[0]
    columns = max(1, CHUNK_LOGIT_ELEMENTS // max(1, n))
    h, matrix = hidden.to(low), weight.to(low)  # cast once
    running_max = torch.full((n,), float("-inf"), dtype=torch.float32, device=hidden.device)
    running_sum = torch.zeros(n, dtype=torch.float32, device=hidden.device)
    picked = torch.zeros(n, dtype=torch.float32, device=hidden.device)
    blocks = []
    for start in range(0, vocab, columns):
        inside = ((targets >= start) & (targets < start + columns)).nonzero().squeeze(1)
        blocks.append((start, inside, targets[inside] - start))
    for start, inside, columns_hit in blocks:
        logits = (h @ matrix[start:start + columns].t()).float()
        picked[inside] = logits[inside, columns_hit]
        new_max = torch.maximum(running_max, logits.amax(dim=1))
        running_sum = running_sum * torch.exp(running_max - new_max) + logits.sub_(new_max[:, None]).exp_().sum(1)
        running_max = new_max
    lse = running_max + torch.log(running_sum)
    total = (lse - picked).sum()
    grad_hidden = torch.zeros_like(hidden, dtype=torch.float32)
    grad_weight = torch.empty_like(weight, dtype=torch.float32) if weight_grad else None
    for start, inside, columns_hit in blocks:
        part = matrix[start:start + columns]
        probs = (h @ part.t()).float().sub_(lse[:, None]).exp_()  # softmax of this block
        probs[inside, columns_hit] -= 1.0
        grad_logits = probs.to(low)
        grad_hidden += grad_logits @ part
        if grad_weight is not None:
            grad_weight[start:start + columns] = grad_logits.t() @ h
    return total, grad_hidden.to(hidden.dtype), grad_weight


def _chunk_loss(head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(head(hidden).float(), targets, reduction="sum")


def attention_stays_in_documents(model: Any, length: int = 12, seed: int = 0) -> bool:
    """Check on this model that packed ``position_ids`` isolate documents: a document's loss must not
    change when another document is packed before it (False: this attention implementation ignores
    packing, and packed blocks would attend across documents)."""
    vocab = model.get_input_embeddings().weight.shape[0]
    generator = torch.Generator().manual_seed(seed)
    first, second = (torch.randint(0, vocab, (1, length), generator=generator) for _ in range(2))
    device = next(model.parameters()).device
    alone_ids, packed_ids = second, torch.cat([first, second], dim=1)
    positions = torch.cat([torch.arange(length), torch.arange(length)])[None]
    labels = torch.full_like(packed_ids, IGNORE)
    labels[:, length + 1:] = second[:, 1:]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            alone = causal_lm_loss_sum(model, alone_ids.to(device), None, alone_ids.to(device),
                                       position_ids=torch.arange(length)[None].to(device))
            packed = causal_lm_loss_sum(model, packed_ids.to(device), None, labels.to(device),
                                        position_ids=positions.to(device))
    finally:
        model.train(was_training)
    return bool(torch.isclose(alone.float(), packed.float(), rtol=1e-3, atol=1e-3))
