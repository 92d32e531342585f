"""Loading a model for use: any model source to a model and tokenizer on a device in eval mode, and a model
reference (a base, maybe with a peft adapter) for scoring.

``transformers`` and ``peft`` are imported when a model is loaded, so that choosing a device or resolving a
source does not pay for them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import ModelSourceError
from .device import pick_device, pick_dtype
from .sources import resolve_local, resolve_model

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


class ModelReference(Protocol):
    """A model directory, optionally with a peft adapter on top (a stage's ``ModelRef``)."""

    path: Path
    adapter: Path | None


def load_model(source: str | Path, *, device: str | None = None,
               dtype: str = "auto") -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Resolve ``source`` (a Path is always a local directory) and load model + tokenizer in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    resolved = resolve_local(str(source), source) if isinstance(source, Path) else resolve_model(source)
    device = pick_device(device)
    torch_dtype = pick_dtype(device, dtype)
    try:
        model = AutoModelForCausalLM.from_pretrained(resolved.path, dtype=torch_dtype)
        tokenizer = AutoTokenizer.from_pretrained(resolved.path)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelSourceError(f"cannot load model from {resolved.path} (source {source!r}): {exc}") from exc
    model.to(device)
    model.eval()
    return model, tokenizer


def load_for_eval(ref: ModelReference, *, device: str, dtype: str = "auto") -> tuple[Any, Any]:
    """Load a model reference for scoring; a peft adapter is merged into a copy of its base."""
    model, tokenizer = load_model(ref.path, device=device, dtype=dtype)
    if ref.adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(ref.adapter)).merge_and_unload()
        model.eval()
    return model, tokenizer
