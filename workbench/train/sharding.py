"""FSDP for the training loop: torch's own FSDP2 (``torch.distributed.fsdp.fully_shard``), on CUDA (NCCL)
or CPU (gloo).

Every transformer block (the model's ``_no_split_modules``, or ``FSDP_TRANSFORMER_CLS_TO_WRAP``) is its
own FSDP unit; the rest (embeddings, final norm, output layer) belongs to a root unit that wraps the
loss computation (:class:`LossModule`), so the chunked loss sees gathered weights and the output
layer's gradient is reduce-scattered like every other. Gradients are *summed* across processes (the
loss is already divided by the global batch's target tokens), so N processes compute what one
process computes on the same global batch. Checkpoints and the saved model use full state dicts
gathered with ``torch.distributed.checkpoint.state_dict`` (on CPU, rank 0 keeps them).

``accelerate launch --use_fsdp`` (or an accelerate config with ``distributed_type: FSDP``) sets
``ACCELERATE_USE_FSDP=true``, which selects this path when the recipe leaves ``strategy: auto``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import CPUOffloadPolicy, FSDPModule, OffloadPolicy, fully_shard

from .loss import causal_lm_loss_sum

STRATEGIES = ("auto", "ddp", "fsdp")


def _env_flag(name: str) -> bool | None:
    value = os.environ.get(name)
    return None if value is None else value.strip().lower() in ("1", "true", "yes")


def resolve_strategy(strategy: str, processes: int) -> str:
    """``ddp`` or ``fsdp`` for this run (``auto``: fsdp when accelerate was launched with FSDP);
    ``none`` for a single process."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if processes <= 1:
        return "none"
    if strategy == "auto":
        return "fsdp" if _env_flag("ACCELERATE_USE_FSDP") else "ddp"
    return strategy


def check_fsdp_support(model: Any, *, is_peft: bool, quantized: bool, ema: bool, new_rows_mask: bool) -> None:
    """Raise a ``ValueError`` naming the fix for what this FSDP path does not support."""
    if quantized:
        raise ValueError("strategy: fsdp cannot shard a 4-bit (bitsandbytes) base: use strategy: ddp for QLoRA")
    if ema:
        raise ValueError("strategy: fsdp does not keep an EMA of sharded weights: drop ema, or use strategy: ddp")
    if new_rows_mask and not is_peft:
        raise ValueError("strategy: fsdp with train: full|embeddings and embeddings: new-rows is not supported "
                         "(the row mask is a gradient hook on the unsharded matrix): use an adapter "
                         "(train: lora, whose trainable_token_indices shard fine), embeddings: full, or "
                         "strategy: ddp")


class LossModule(torch.nn.Module):
    """The FSDP root: Σ cross-entropy of ``model`` on a batch (see :func:`causal_lm_loss_sum`)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, labels: torch.Tensor,
                position_ids: torch.Tensor | None = None) -> torch.Tensor:
        return causal_lm_loss_sum(self.model, input_ids, attention_mask, labels, position_ids=position_ids)


def _block_classes(model: Any) -> set[str]:
    names = os.environ.get("FSDP_TRANSFORMER_CLS_TO_WRAP")
    if names:
        return {n.strip() for n in names.split(",") if n.strip()}
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return set(getattr(base, "_no_split_modules", None) or [])


def shard(model: torch.nn.Module) -> LossModule:
    """Shard ``model`` in place with FSDP2 (one unit per transformer block, plus the root) and return
    the root that computes the loss. Parameters become DTensors: build the optimizer afterwards."""
    classes = _block_classes(model)
    blocks = [m for m in model.modules() if type(m).__name__ in classes]
    if not blocks:
        raise ValueError(f"FSDP found no transformer blocks to shard in {type(model).__name__} (looked for "
                         f"{sorted(classes) or 'its _no_split_modules'}; set FSDP_TRANSFORMER_CLS_TO_WRAP)")
    reshard = _env_flag("FSDP_RESHARD_AFTER_FORWARD")
    offload = CPUOffloadPolicy() if _env_flag("FSDP_OFFLOAD_PARAMS") else OffloadPolicy()
    options: dict[str, Any] = {"offload_policy": offload}
    for block in blocks:
        fully_shard(block, reshard_after_forward=True if reshard is None else reshard, **options)
    root = LossModule(model)
    fully_shard(root, **options)
    for module in root.modules():
        if isinstance(module, FSDPModule):
            # sum, not average: the loss is already normalised by the global batch (gloo has no PREMUL_SUM)
            module.set_gradient_divide_factor(1.0)
            module.set_force_sum_reduction_for_comms(True)
    return root


def remap_groups(groups: list[dict[str, Any]], names: dict[int, str], model: torch.nn.Module) -> list[dict[str, Any]]:
    """The optimizer groups with each parameter replaced by the sharded parameter of the same name
    (``names``: id of an unsharded parameter -> its name, taken before sharding)."""
    params = dict(model.named_parameters())
    return [{**group, "params": [params[names[id(p)]] for p in group["params"]]} for group in groups]


@contextmanager
def gathered(root: torch.nn.Module) -> Iterator[None]:
    """Gather the root unit's weights (embeddings, norm, output layer) so the inner model can be called
    directly (the curves); each block gathers its own in its forward. Every process must enter."""
    root.unshard()  # type: ignore[operator]
    try:
        yield
    finally:
        root.reshard()  # type: ignore[operator]


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The whole (unsharded) state dict of a sharded ``model`` on CPU in rank 0 (empty elsewhere);
    a collective: every process must call it."""
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def full_optimizer_state(root: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer state keyed by parameter name, unsharded, on CPU in rank 0 (a collective)."""
    return get_optimizer_state_dict(root, optimizer,
                                    options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_optimizer_state(root: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load a full, name-keyed optimizer state (every process passes the same one) into the shards."""
    set_optimizer_state_dict(root, optimizer, state, options=StateDictOptions(full_state_dict=True))
