"""Memory a model step used: the peak since a reset (CUDA's allocator, or the process's resident set on CPU) and
the resident memory now."""

from __future__ import annotations

import contextlib
import resource
import sys
from pathlib import Path

import torch

LIVE_PEAK_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}
"""Environment for a process whose CPU peak resident memory should be its live peak: glibc serves every
block over 64 KiB with mmap, so a freed tensor leaves the resident set at once. By default freed heap blocks
stay resident and the high-water mark also counts fragmentation (up to 2x with gradient checkpointing),
which CUDA's ``max_memory_allocated`` does not. Benchmarks and the memory tests run their workers with it."""


def reset_peak_memory(device: str) -> None:
    """Start measuring peak memory from now: CUDA's allocator peaks on ``device`` (``cuda:1`` is GPU 1), or
    (Linux) the process's resident high-water mark, which writing 5 to ``/proc/self/clear_refs`` resets."""
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(torch.device(device))
    elif sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")


def _proc_status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def peak_memory_mb(device: str) -> float:
    """Peak memory since the last :func:`reset_peak_memory`: on CUDA the allocator's peak on ``device`` (tensors
    only: the CUDA context and the allocator's cached blocks are not in it, see :func:`peak_reserved_mb`); on CPU
    the peak resident set size (Linux; elsewhere since the process started)."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated(torch.device(device)) / 2**20
    high_water = _proc_status_mb("VmHWM")
    if high_water is not None:
        return high_water
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def peak_reserved_mb(device: str) -> float | None:
    """Peak memory CUDA's caching allocator reserved on ``device`` since the last :func:`reset_peak_memory`
    (what the GPU had to hold for the tensors, fragmentation included); None off CUDA."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_reserved(torch.device(device)) / 2**20
    return None


def peak_memory_record(device: str) -> dict[str, float]:
    """The peaks a training stage records: ``peak_memory_mb`` (allocated) and, on CUDA, ``peak_reserved_mb``."""
    reserved = peak_reserved_mb(device)
    return {"peak_memory_mb": round(peak_memory_mb(device), 1)} | (
        {"peak_reserved_mb": round(reserved, 1)} if reserved is not None else {})


def resident_memory_mb() -> float | None:
    """The process's resident memory now (Linux), None elsewhere."""
    return _proc_status_mb("VmRSS")
