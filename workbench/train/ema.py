"""An exponential moving average of the trainable weights, saved and scored as its own model."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


class EMA:
    """Shadow weights ``s ← d·s + (1−d)·w`` after every optimizer step, with the usual warmup
    ``d_t = min(decay, (1 + t) / (10 + t))`` so early steps are not dominated by the initial weights."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be between 0 and 1, got {decay}")
        self.decay = decay
        self.updates = 0
        self.shadow = {n: p.detach().float().clone() for n, p in model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for name, param in model.named_parameters():
            if name in self.shadow:
                shadow = self.shadow[name]
                if shadow.device != param.device:  # the model moved (or a shadow was restored elsewhere): follow it
                    shadow = self.shadow[name] = shadow.to(param.device)
                shadow.lerp_(param.detach().float(), 1.0 - decay)

    def on_step(self, step: int, model: torch.nn.Module, state: dict[str, Any]) -> None:
        """The training loop's callback hook: one update per optimizer step."""
        self.update(model)

    @contextmanager
    def swapped_in(self, model: torch.nn.Module) -> Iterator[None]:
        """Temporarily put the averaged weights into ``model``."""
        params = dict(model.named_parameters())
        live = {n: params[n].detach().clone() for n in self.shadow}
        with torch.no_grad():
            for name, value in self.shadow.items():
                params[name].copy_(value.to(params[name].dtype))
        try:
            yield
        finally:
            with torch.no_grad():
                for name, value in live.items():
                    params[name].copy_(value)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a saved average onto the device of the weights it shadows: a checkpoint is read onto the CPU,
        and an update mixing a CPU shadow with CUDA weights would fail (or crawl) after every resume."""
        self.decay, self.updates = state["decay"], state["updates"]
        self.shadow = {n: v.to(self._device_of(n, v), dtype=torch.float32, copy=True)
                       for n, v in state["shadow"].items()}

    def _device_of(self, name: str, saved: torch.Tensor) -> torch.device:
        """Where the shadow of ``name`` lives: beside its weight (the current shadow was made from it)."""
        current = self.shadow.get(name)
        return current.device if current is not None else saved.device
