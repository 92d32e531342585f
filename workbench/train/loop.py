"""A small, resumable training loop: warmup + decay, accumulation, atomic checkpoints, curves.

Batches come from a function of the optimizer step, so a resumed run sees exactly the data an
uninterrupted run would have seen from that step on.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .loss import causal_lm_loss_sum

Batch = dict[str, torch.Tensor]


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
          log: Callable[..., None] = lambda *a, **k: None, progress: bool = True,
          desc: str = "train") -> dict[str, Any]:
    """Run ``settings.steps`` optimizer steps; ``batch_for(step, micro)`` returns input_ids/labels/mask."""
    groups = param_groups or [{"params": [p for p in model.parameters() if p.requires_grad]}]
    optimizer = torch.optim.AdamW(groups, lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, settings))
    state = {"step": 0, "losses": [], "tokens": 0, "seconds": 0.0}
    if checkpoint_dir is not None:
        state = _restore(checkpoint_dir, model, optimizer, scheduler, state, log)
    device = next(model.parameters()).device
    model.train()
    bar = tqdm(total=settings.steps, initial=state["step"], desc=desc, disable=not progress, unit="step")
    while state["step"] < settings.steps:
        started = time.time()
        loss_sum, tokens = _accumulate(model, batch_for, state["step"], settings.grad_accum, device)
        torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], settings.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state["step"] += 1
        state["tokens"] += tokens
        state["seconds"] += time.time() - started
        state["losses"].append(round(loss_sum, 6))
        bar.set_postfix(loss=f"{loss_sum:.3f}", tok_s=f"{state['tokens'] / max(state['seconds'], 1e-9):.0f}")
        bar.update(1)
        if checkpoint_dir is not None and settings.checkpoint_every and (
                state["step"] % settings.checkpoint_every == 0) and state["step"] < settings.steps:
            _save(checkpoint_dir, model, optimizer, scheduler, state)
            log("checkpoint_saved", optimizer_step=state["step"], loss=loss_sum)
    bar.close()
    model.eval()
    return state


def _accumulate(model: torch.nn.Module, batch_for: Callable[[int, int], Batch], step: int, accum: int,
                device: torch.device) -> tuple[float, int]:
    """Forward/backward ``accum`` micro-batches; the loss is averaged over all target tokens."""
    batches = [batch_for(step, micro) for micro in range(accum)]
    total_targets = sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches) or 1
    loss_sum = 0.0
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        loss = causal_lm_loss_sum(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
        loss = loss / total_targets
        loss.backward()
        loss_sum += float(loss.detach())
    return loss_sum, int(sum(int(b["attention_mask"].sum()) for b in batches))


def _trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def _save(directory: Path, model: torch.nn.Module, optimizer: Any, scheduler: Any, state: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    payload = {
        "model": _trainable_state(model), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "state": state, "rng": {"python": random.getstate(), "numpy": np.random.get_state(),
                                "torch": torch.get_rng_state()},
    }
    final = directory / f"step-{state['step']:08d}.pt"
    tmp = directory / f".{final.name}.tmp"
    torch.save(payload, tmp)
    os.replace(tmp, final)
    for old in directory.glob("step-*.pt"):
        if old != final:
            old.unlink()


def _restore(directory: Path, model: torch.nn.Module, optimizer: Any, scheduler: Any, state: dict,
             log: Callable[..., None]) -> dict:
    checkpoints = sorted(directory.glob("step-*.pt"))
    if not checkpoints:
        return state
    payload = torch.load(checkpoints[-1], map_location="cpu", weights_only=False)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in payload["model"].items():
            params[name].copy_(value)
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    random.setstate(payload["rng"]["python"])
    np.random.set_state(payload["rng"]["numpy"])
    torch.set_rng_state(payload["rng"]["torch"])
    log("resumed", from_step=payload["state"]["step"], checkpoint=checkpoints[-1].name)
    return payload["state"]
