"""Models the app keeps loaded between translations, and the translations it can cancel.

"Translate with every model" loads each model of a run (base, every stage, every adapter merged into a copy
of its base). Loading dominates a second call, so loaded models are kept: keyed by model directory, adapter,
device and dtype, the least recently used dropped once their parameters take more than ``max_bytes`` (the
last one loaded is always kept). A translation running for a browser session can be cancelled: it checks
its flag between models, and whoever cancels can wait until it has stopped.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.models import load_for_eval
from workbench.stages.base import ModelRef

DEFAULT_MAX_BYTES = 4 * 2**30  # six SmolLM2-135M models in bfloat16 take 1.6 GiB
ModelKey = tuple[str, str | None, str, str]


def _default_loader(path: Path, adapter: Path | None, device: str, dtype: str) -> tuple[Any, Any]:
    return load_for_eval(ModelRef(Path(path), Path(adapter) if adapter else None), device=device, dtype=dtype)


def parameter_bytes(model: Any) -> int:
    """Bytes of a torch model's parameters and buffers (0 for anything else)."""
    tensors = [*getattr(model, "parameters", list)(), *getattr(model, "buffers", list)()]
    return sum(t.numel() * t.element_size() for t in tensors)


class ModelCache:
    """Loaded ``(model, tokenizer)`` pairs, the least recently used dropped beyond ``max_bytes``."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES,
                 loader: Callable[[Path, Path | None, str, str], tuple[Any, Any]] = _default_loader) -> None:
        self.max_bytes = max_bytes
        self.loads = 0  # models loaded since the app started (the rest came from memory)
        self._loader = loader
        self._models: OrderedDict[ModelKey, tuple[Any, Any, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: Path, adapter: Path | None, device: str, dtype: str = "auto") -> tuple[Any, Any, bool]:
        """``(model, tokenizer, loaded_now)``: from memory when kept, else loaded (and kept)."""
        key = (str(Path(path).resolve()), str(Path(adapter).resolve()) if adapter else None, device, dtype)
        with self._lock:  # one load at a time: two sessions asking for one model load it once
            if key in self._models:
                self._models.move_to_end(key)
                model, tokenizer, _ = self._models[key]
                return model, tokenizer, False
            model, tokenizer = self._loader(Path(path), Path(adapter) if adapter else None, device, dtype)
            self.loads += 1
            self._models[key] = (model, tokenizer, parameter_bytes(model))
            while len(self._models) > 1 and sum(size for *_, size in self._models.values()) > self.max_bytes:
                self._models.popitem(last=False)
            return model, tokenizer, True

    def __len__(self) -> int:
        return len(self._models)

    def clear(self) -> None:
        with self._lock:
            self._models.clear()


@dataclass
class Job:
    """One running "translate with every model": its stop flag, and how far it got once it has stopped."""

    total: int = 0
    done: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)


class Jobs:
    """The translation running for each browser session (at most one per session)."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def begin(self, session: str, total: int) -> Job:
        """A new job for ``session``; one still running there is told to stop first."""
        job = Job(total=total)
        with self._lock:
            previous = self._jobs.get(session)
            self._jobs[session] = job
        if previous is not None:
            previous.stop.set()
        return job

    def cancel(self, session: str, wait: float = 60.0) -> Job | None:
        """Tell the session's job to stop and wait (up to ``wait`` seconds) until it has; None if there is none."""
        with self._lock:
            job = self._jobs.get(session)
        if job is None:
            return None
        job.stop.set()
        job.ended.wait(wait)
        return job

    def end(self, session: str, job: Job) -> None:
        job.ended.set()
        with self._lock:
            if self._jobs.get(session) is job:
                del self._jobs[session]
