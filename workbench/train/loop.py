"""A small, resumable training loop: warmup + decay, accumulation, atomic checkpoints, callbacks,
and data parallelism when launched with several processes.

Batches come from a function of the optimizer step, so a resumed run sees exactly the data an
uninterrupted run would have seen from that step on. Under ``accelerate launch`` / ``torchrun``
every process builds the same global micro-batches and takes its share of the rows; gradients are
summed across processes, so N processes compute what one process computes on the same global batch.
The weights are either replicated (``ddp``: gradients all-reduced in buckets) or sharded with torch's
FSDP2 (``fsdp``, see :mod:`workbench.train.sharding`).

Checkpoints hold tensors and plain containers only and are read with ``torch.load(weights_only=True)``:
a ``.pt`` planted in a copied or shared run folder cannot run code. Each ``step-N.pt`` gets a sidecar
``step-N.json`` (its size and sha256), written after the data; a checkpoint whose data does not match
its sidecar is named in a warning and the previous one is used (the last two are kept).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from ..distributed import World
from ..io import atomic_write_json, sha256_file
from ..models import pick_dtype
from .loss import IGNORE, causal_lm_loss_sum
from .sharding import (
    full_optimizer_state,
    full_state_dict,
    gathered,
    load_optimizer_state,
    remap_groups,
    resolve_strategy,
    shard,
)

Batch = dict[str, torch.Tensor]

CHECKPOINT_FORMAT = 2  # 2: plain tensors and containers (weights_only loading) with a JSON sidecar
KEEP_CHECKPOINTS = 2  # the newest and the one before it, to fall back on when the newest is damaged
logger = logging.getLogger("workbench")


@dataclass(frozen=True)
class LoopSettings:
    steps: int
    lr: float
    warmup_ratio: float = 0.1
    schedule: str = "cosine"  # cosine | linear | constant
    weight_decay: float = 0.0
    grad_accum: int = 1
    max_grad_norm: float = 1.0
    checkpoint_every: int = 0  # optimizer steps; 0 = never
    strategy: str = "auto"  # several processes: ddp | fsdp | auto (fsdp under accelerate launch --use_fsdp)
    autocast: torch.dtype | None = None  # mixed precision: float32 weights, matmuls in this dtype (bfloat16)


class Callback(Protocol):
    """Called after every optimizer step; its state is saved in checkpoints. A callback may also define
    ``on_start(model, state)``: called once before the first step of a run that did not resume."""

    def on_step(self, step: int, model: torch.nn.Module, state: dict[str, Any]) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def lr_factor(step: int, settings: LoopSettings) -> float:
    """Warmup to 1, then cosine or linear decay to 0 over the remaining steps."""
    warmup = int(settings.steps * settings.warmup_ratio)
    if step < warmup:
        return (step + 1) / warmup
    if settings.schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, settings.steps - warmup)
    return 0.5 * (1 + math.cos(math.pi * progress)) if settings.schedule == "cosine" else 1.0 - progress


def train(model: torch.nn.Module, batch_for: Callable[[int, int], Batch], settings: LoopSettings, *,
          param_groups: list[dict[str, Any]] | None = None, checkpoint_dir: Path | None = None,
          log: Callable[..., None] = lambda *a, **k: None, progress: bool = True, desc: str = "train",
          callbacks: dict[str, Callback] | None = None) -> dict[str, Any]:
    """Run ``settings.steps`` optimizer steps; ``batch_for(step, micro)`` returns input_ids/labels and
    either an attention_mask or packed position_ids. Returns the loop state (losses per step, tokens, time)."""
    callbacks = callbacks or {}
    world = World.current()
    strategy = resolve_strategy(settings.strategy, world.size)
    groups = param_groups or [{"params": [p for p in model.parameters() if p.requires_grad]}]
    payload = _load_checkpoint(checkpoint_dir, log) if checkpoint_dir is not None else None
    state = {"step": 0, "losses": [], "tokens": 0, "targets": 0, "seconds": 0.0}
    if payload is not None:
        _load_weights(model, payload["model"])
    else:  # before sharding: a callback's forward pass on a sharded model would start FSDP below its root
        _start_callbacks(callbacks, model, state)
    root = None
    if strategy == "fsdp":
        names = {id(p): n for n, p in model.named_parameters()}
        trainable = [n for n, p in model.named_parameters() if p.requires_grad]
        root = shard(model)
        groups = remap_groups(groups, names, model)
    params = [p for g in groups for p in g["params"]]
    optimizer = _adamw(groups, settings)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, settings))
    if payload is not None:
        state = _restore(payload, optimizer, scheduler, callbacks, root)
        log("resumed", from_step=state["step"], checkpoint=payload["name"], rejected=payload["rejected"])
    loss_fn = root if root is not None else partial(causal_lm_loss_sum, model)
    device = next(model.parameters()).device
    model.train()
    bar = tqdm(total=settings.steps, initial=state["step"], desc=desc, disable=not (progress and world.main),
               unit="step")
    while state["step"] < settings.steps:
        started = time.time()
        loss, tokens, targets = _accumulate(loss_fn, batch_for, state["step"], settings.grad_accum, device, world,
                                            every_rank=root is not None, precision=settings.autocast)
        if strategy == "ddp":
            _all_reduce_grads(params)
        torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state["step"] += 1
        state["tokens"] += tokens
        state["targets"] += targets
        state["seconds"] += time.time() - started
        state["losses"].append(round(loss, 6))
        if callbacks:
            with gathered(root) if root is not None else nullcontext():
                for callback in callbacks.values():
                    callback.on_step(state["step"], model, state)
            model.train()
        bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{state['tokens'] / max(state['seconds'], 1e-9):.0f}")
        bar.update(1)
        if checkpoint_dir is not None and settings.checkpoint_every and (
                state["step"] % settings.checkpoint_every == 0) and state["step"] < settings.steps:
            if root is not None:  # gathering the shards is a collective: every process takes part
                weights = {n: v for n, v in full_state_dict(model).items() if n in trainable}
                _save(checkpoint_dir, weights, full_optimizer_state(root, optimizer), scheduler, state, callbacks,
                      write=world.main, optimizer_format="fsdp")
            elif world.main:
                _save(checkpoint_dir, _trainable_state(model), optimizer.state_dict(), scheduler, state, callbacks)
            if world.main:
                log("checkpoint_saved", optimizer_step=state["step"], loss=loss)
            world.barrier()
    bar.close()
    model.eval()
    state["strategy"] = strategy
    return state


def _start_callbacks(callbacks: dict[str, Callback], model: torch.nn.Module, state: dict[str, Any]) -> None:
    """``on_start`` of the callbacks that have one, on the model before any sharding (a fresh run: a resumed one
    restores their state instead)."""
    starters = [cb.on_start for cb in callbacks.values() if hasattr(cb, "on_start")]
    for start in starters:
        start(model, state)
    if starters:
        model.train()


def mixed_precision(device: str, dtype: str) -> torch.dtype | None:
    """The autocast dtype for training float32 weights on ``device`` when the recipe's ``dtype`` resolves to
    bfloat16 there (``auto`` on hardware with native bf16, see :func:`workbench.models.native_bfloat16`), else
    None: plain float32."""
    return torch.bfloat16 if pick_dtype(device, dtype) == torch.bfloat16 else None


def precision_name(model: torch.nn.Module, autocast: torch.dtype | None) -> str:
    """How a model trains: its (first) floating weights' dtype, plus the autocast dtype if any
    (``float32``, ``bfloat16``, ``float32+autocast:bfloat16``)."""
    weights = str(next(p for p in model.parameters() if p.is_floating_point()).dtype).replace("torch.", "")
    return f"{weights}+autocast:{str(autocast).replace('torch.', '')}" if autocast is not None else weights


def autocast(device: torch.device | str, dtype: torch.dtype | None) -> Any:
    """``torch.autocast`` to ``dtype`` on ``device`` (a no-op context when ``dtype`` is None): the forward pass
    and its gradients run their matmuls in ``dtype`` while the weights, optimizer state and loss stay float32."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def _adamw(groups: list[dict[str, Any]], settings: LoopSettings) -> torch.optim.Optimizer:
    """AdamW, fused (one kernel for all parameters: ~10x faster steps on CPU) where torch supports it."""
    params = [p for g in groups for p in g["params"]]
    fusable = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    if fusable:
        try:
            return torch.optim.AdamW(groups, lr=settings.lr, weight_decay=settings.weight_decay, fused=True)
        except (RuntimeError, TypeError):
            pass
    return torch.optim.AdamW(groups, lr=settings.lr, weight_decay=settings.weight_decay)


def _accumulate(loss_fn: Callable[..., torch.Tensor], batch_for: Callable[[int, int], Batch], step: int,
                accum: int, device: torch.device, world: World, every_rank: bool = False,
                precision: torch.dtype | None = None) -> tuple[float, int, int]:
    """Forward/backward ``accum`` micro-batches (this process's rows of each); the loss is averaged
    over all target tokens of the global batch. Returns (loss, input tokens, target tokens), global.
    ``every_rank``: every process must run every micro-batch (FSDP's collectives). ``precision``: the forward
    pass runs under :func:`autocast` to that dtype (the backward pass follows the forward's dtypes)."""
    batches = [batch_for(step, micro) for micro in range(accum)]
    total_targets = sum(int((b["labels"][:, 1:] != IGNORE).sum()) for b in batches) or 1
    tokens = sum(int(b["attention_mask"].sum()) if b.get("attention_mask") is not None else b["input_ids"].numel()
                 for b in batches)
    loss_sum = torch.zeros((), dtype=torch.float64)
    for batch in batches:
        part = {k: v[world.rank::world.size].to(device) for k, v in batch.items() if v is not None}
        if part["input_ids"].shape[0] == 0:
            if every_rank:
                raise ValueError(f"a micro-batch of {batch['input_ids'].shape[0]} rows leaves process {world.rank} "
                                 f"of {world.size} without rows: with fsdp, batch_size must be at least the "
                                 f"number of processes")
            continue
        with autocast(device, precision):
            loss = loss_fn(part["input_ids"], part.get("attention_mask"), part["labels"],
                           position_ids=part.get("position_ids")) / total_targets
        loss.backward()
        loss_sum += loss.detach().double().cpu()
    if world.size > 1:
        torch.distributed.all_reduce(loss_sum)
    return float(loss_sum), tokens, total_targets


def _all_reduce_grads(params: list[torch.nn.Parameter], bucket: int = 1 << 24) -> None:
    """Sum gradients across processes, flattened into buckets of up to ``bucket`` elements."""
    grads = []
    for param in params:
        if param.grad is None:
            param.grad = torch.zeros_like(param)
        grads.append(param.grad)
    start = 0
    while start < len(grads):
        end, size = start, 0
        while end < len(grads) and (end == start or size + grads[end].numel() <= bucket):
            size += grads[end].numel()
            end += 1
        flat = torch.cat([g.reshape(-1) for g in grads[start:end]])
        torch.distributed.all_reduce(flat)
        offset = 0
        for grad in grads[start:end]:
            grad.copy_(flat[offset:offset + grad.numel()].view_as(grad))
            offset += grad.numel()
        start = end


def _trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def _save(directory: Path, weights: dict[str, torch.Tensor], optimizer_state: dict[str, Any], scheduler: Any,
          state: dict, callbacks: dict[str, Callback], write: bool = True, optimizer_format: str = "torch") -> None:
    """Write a checkpoint atomically, then its sidecar, then drop all but the last two complete ones
    (``write=False``: only take part in gathering callback state)."""
    if not write:
        return
    directory.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT, "model": weights, "optimizer": optimizer_state,
        "optimizer_format": optimizer_format, "scheduler": scheduler.state_dict(), "state": state,
        "callbacks": {name: cb.state_dict() for name, cb in callbacks.items()}, "rng": _rng_state(),
    }
    final = directory / f"step-{state['step']:08d}.pt"
    tmp = directory / f".{final.name}.tmp"
    torch.save(payload, tmp)
    with open(tmp, "rb+") as handle:  # on disk before the rename: a crash leaves old or new, never half
        os.fsync(handle.fileno())
    os.replace(tmp, final)
    atomic_write_json(_sidecar(final), {"format": CHECKPOINT_FORMAT, "file": final.name, "step": state["step"],
                                        "bytes": final.stat().st_size, "sha256": sha256_file(final)})
    _prune_checkpoints(directory, newest=state["step"])


def _rng_state() -> dict[str, Any]:
    """Python's, numpy's and torch's RNG states as ints, lists and tensors (no numpy arrays: plain data)."""
    version, python_keys, python_gauss = random.getstate()
    name, numpy_keys, position, has_gauss, numpy_gauss = np.random.get_state()
    return {"python": {"version": version, "keys": list(python_keys), "gauss": python_gauss},
            "numpy": {"name": name, "keys": [int(k) for k in numpy_keys], "position": int(position),
                      "has_gauss": int(has_gauss), "gauss": float(numpy_gauss)},
            "torch": torch.get_rng_state()}


def _set_rng_state(rng: dict[str, Any]) -> None:
    python, numpy = rng["python"], rng["numpy"]
    random.setstate((python["version"], tuple(python["keys"]), python["gauss"]))
    np.random.set_state((numpy["name"], np.array(numpy["keys"], dtype=np.uint32), numpy["position"],
                         numpy["has_gauss"], numpy["gauss"]))
    torch.set_rng_state(rng["torch"])


def _sidecar(checkpoint: Path) -> Path:
    return checkpoint.with_suffix(".json")


def _checkpoint_step(path: Path) -> int:
    return int(path.stem.removeprefix("step-"))


def _checkpoints(directory: Path) -> list[Path]:
    """The checkpoint files of ``directory``, oldest step first."""
    return sorted((p for p in directory.glob("step-*.pt") if p.stem.removeprefix("step-").isdigit()),
                  key=_checkpoint_step)


def _prune_checkpoints(directory: Path, newest: int) -> None:
    """Keep the last ``KEEP_CHECKPOINTS`` complete checkpoints up to step ``newest``; drop the rest, including
    incomplete ones and any of later steps (left from a rejected checkpoint's abandoned run)."""
    complete = [p for p in _checkpoints(directory) if _checkpoint_step(p) <= newest and _size_matches(p)]
    kept = set(complete[-KEEP_CHECKPOINTS:])
    for path in _checkpoints(directory):
        if path not in kept:
            path.unlink(missing_ok=True)
            _sidecar(path).unlink(missing_ok=True)
    for leftover in directory.glob(".step-*.tmp"):
        leftover.unlink(missing_ok=True)


def _size_matches(checkpoint: Path) -> bool:
    """A cheap completeness check (the sidecar exists and names the file's size); loading also checks the hash."""
    try:
        return json.loads(_sidecar(checkpoint).read_text(encoding="utf-8"))["bytes"] == checkpoint.stat().st_size
    except (OSError, ValueError, KeyError, TypeError):
        return False


class CheckpointError(Exception):
    """A checkpoint that is incomplete, damaged, from an older format, or not plain data."""


def _load_checkpoint(directory: Path, log: Callable[..., None] = lambda *a, **k: None) -> dict[str, Any] | None:
    """The newest checkpoint that verifies; each rejected one is named in a warning. None (start over, with a
    warning if any was rejected) when none does."""
    rejected = []
    for path in reversed(_checkpoints(directory)):
        try:
            payload = _read_verified(path)
        except CheckpointError as exc:
            rejected.append(path.name)
            _warn(log, "checkpoint_rejected", f"checkpoint {path} is unusable ({exc}); trying the previous one",
                  checkpoint=str(path), reason=str(exc))
            continue
        payload["name"] = path.name
        payload["rejected"] = rejected
        return payload
    if rejected:
        _warn(log, "checkpoints_unusable", f"no usable checkpoint in {directory} (rejected: {', '.join(rejected)}); "
                                           f"training starts over from step 0", directory=str(directory),
              rejected=rejected)
    return None


def _read_verified(path: Path) -> dict[str, Any]:
    """The checkpoint at ``path`` if it matches its sidecar and holds plain data only, else CheckpointError."""
    try:
        manifest = json.loads(_sidecar(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"its sidecar {_sidecar(path).name} is missing: the save was interrupted, or the "
                              f"checkpoint was written by an older version") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"its sidecar {_sidecar(path).name} is unreadable: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"its sidecar does not describe a format-{CHECKPOINT_FORMAT} checkpoint")
    size = path.stat().st_size
    if size != manifest.get("bytes"):
        raise CheckpointError(f"{size} bytes where {manifest.get('bytes')} were written: truncated or overwritten")
    if sha256_file(path) != manifest.get("sha256"):
        raise CheckpointError("its content does not match the sha256 written with it: damaged")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unpickling failure (refused globals, bad zip) means unusable
        raise CheckpointError(f"it is not a plain-tensor checkpoint and was not run: {exc}") from None
    missing = {"model", "optimizer", "scheduler", "state", "rng"} - set(payload if isinstance(payload, dict) else ())
    if missing:
        raise CheckpointError(f"it lacks {', '.join(sorted(missing))}")
    return payload


def _warn(log: Callable[..., None], event: str, message: str, **fields: Any) -> None:
    """A warning on the console (the ``workbench`` logger) and in the run's events."""
    logger.warning(message)
    log(event, level="warning", message=message, **fields)


def _load_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)


def _restore(payload: dict[str, Any], optimizer: Any, scheduler: Any, callbacks: dict[str, Callback],
             root: torch.nn.Module | None) -> dict:
    """Optimizer, scheduler, callbacks and RNG from a checkpoint (the weights are loaded before sharding)."""
    saved = payload.get("optimizer_format", "torch")
    wanted = "fsdp" if root is not None else "torch"
    if saved != wanted:
        raise ValueError(f"the checkpoint was written with strategy {'fsdp' if saved == 'fsdp' else 'ddp'}: resume "
                         f"it with the same strategy (and the same number of processes), or delete the "
                         f"stage's checkpoints/ to start over")
    if root is not None:
        load_optimizer_state(root, optimizer, payload["optimizer"])
    else:
        optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    for name, callback in callbacks.items():
        if name in payload.get("callbacks", {}):
            callback.load_state_dict(payload["callbacks"][name])
    _set_rng_state(payload["rng"])
    return {"targets": 0, **payload["state"]}
