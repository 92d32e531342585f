"""Data parallelism on existing launchers: ``accelerate launch`` or ``torchrun`` start N copies of
``workbench run``; this module joins them into one process group (NCCL on CUDA, gloo on CPU).

Rank 0 runs the recipe as usual and owns the run store; the other processes follow it step by
step and take part only in training stages (see ``Stage.distributed``), each training on its share
of every global batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from .models import pick_device

# helpers wait at a barrier while rank 0 crawls or scores alone: allow long single-process steps
BARRIER_TIMEOUT = timedelta(hours=24)


@dataclass(frozen=True)
class World:
    """This process's place among the data-parallel processes (one process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1

    @classmethod
    def current(cls) -> World:
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.size > 1:
            torch.distributed.barrier()


def launched_processes() -> int:
    """Processes the launcher started (``WORLD_SIZE``; 1 when not launched)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def init_from_launcher(device: str | None) -> tuple[World, str]:
    """Join the launcher's process group if there is one; returns the world and this process's device."""
    device = pick_device(device)
    if launched_processes() <= 1:
        return World(), device
    if device.startswith("cuda"):
        local = int(os.environ.get("LOCAL_RANK", "0"))
        device = f"cuda:{local}"
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo", timeout=BARRIER_TIMEOUT)
    return World.current(), device
