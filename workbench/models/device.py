"""Where a model computes and how: the device (CUDA, Apple MPS or CPU), the dtype it has in hardware, and the
seeds that make a step reproducible."""

from __future__ import annotations

import random
import re

import numpy as np
import torch

from ..errors import ModelSourceError

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
           "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16, "half": torch.float16}


def pick_device(preferred: str | None = None) -> str:
    """``cuda`` if available, else ``mps``, else ``cpu``; an explicit choice is checked to be usable."""
    choice = (preferred or "auto").strip().lower()
    if choice == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if _mps_available() else "cpu"
    if choice == "cpu":
        return "cpu"
    if choice == "mps":
        if not _mps_available():
            raise ModelSourceError("device 'mps' was requested but Apple MPS is not available here; "
                                   "use device: cpu or device: auto")
        return "mps"
    if re.fullmatch(r"cuda(:\d+)?", choice):
        _check_cuda(choice)
        return choice
    raise ModelSourceError(f"unknown device {preferred!r}: use auto, cpu, cuda, cuda:N or mps")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def _check_cuda(choice: str) -> None:
    if not torch.cuda.is_available():
        why = ("this torch build has no CUDA support (CPU-only build)" if torch.version.cuda is None
               else "no CUDA GPU is visible (check the driver and CUDA_VISIBLE_DEVICES)")
        raise ModelSourceError(f"device {choice!r} was requested but CUDA is not available: {why}. "
                               "Use device: cpu or device: auto.")
    index = int(choice.split(":")[1]) if ":" in choice else 0
    if index >= torch.cuda.device_count():
        raise ModelSourceError(f"device {choice!r} was requested but only {torch.cuda.device_count()} "
                               "CUDA device(s) are visible")


def native_bfloat16(device: str) -> bool:
    """True when ``device`` multiplies bfloat16 matrices in hardware: CUDA with bf16 support, or an x86 CPU
    with AVX512-BF16 or AMX (there bf16 matmuls run 2-5x faster than float32; elsewhere they are emulated
    and slower, so float32 stays)."""
    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device != "cpu" or not torch.backends.mkldnn.is_available():  # oneDNN runs the CPU's bf16 matmuls
        return False
    checks = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(check is not None and bool(check()) for check in checks)


def pick_dtype(device: str, dtype: str = "auto") -> torch.dtype:
    """``auto``: bfloat16 where the device has it in hardware (:func:`native_bfloat16`), else float16 on CUDA
    and float32 on cpu/mps."""
    name = (dtype or "auto").strip().lower()
    if name == "auto":
        if native_bfloat16(device):
            return torch.bfloat16
        return torch.float16 if device.startswith("cuda") else torch.float32
    if name not in _DTYPES:
        raise ModelSourceError(f"unknown dtype {dtype!r}: use auto, float32, bfloat16 or float16")
    return _DTYPES[name]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) for a reproducible step."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
