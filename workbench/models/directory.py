"""A local Hugging Face model directory: what it must hold (``config.json``, weights, tokenizer files) and the
fingerprint of its content."""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelSourceError
from ..io import stable_hash, tree_fingerprint

_LOCAL_FULL_HASH_LIMIT = 2 * 1024**3  # local dirs above this are fingerprinted by names + sizes + mtimes


def check_model_dir(path: Path) -> None:
    """Raise ModelSourceError unless ``path`` looks like a Hugging Face causal LM directory."""
    if not path.exists():
        raise ModelSourceError(f"model directory {path} does not exist; expected a directory containing "
                               "config.json, the weights and the tokenizer files")
    if not path.is_dir():
        raise ModelSourceError(f"model source {path} is a file, not a directory; expected a directory "
                               "containing config.json (use gguf:<file> for a .gguf file)")
    if not (path / "config.json").is_file():
        hint = (" It holds adapter_config.json: this is a LoRA adapter, point the recipe at its base model."
                if (path / "adapter_config.json").is_file() else "")
        raise ModelSourceError(f"model directory {path} has no config.json; expected a Hugging Face model "
                               "directory (config.json + *.safetensors or *.bin weights + tokenizer files)."
                               + hint)
    if not has_weights(path):
        raise ModelSourceError(f"model directory {path} has config.json but no weights "
                               "(*.safetensors or *.bin)")


def has_weights(path: Path) -> bool:
    """True if ``path`` holds ``*.safetensors`` or ``*.bin`` weights."""
    return any(path.glob("*.safetensors")) or any(path.glob("*.bin"))


def local_fingerprint(path: Path) -> str:
    """Content hash of a model directory; names + sizes + mtimes for directories above 2 GB."""
    files = sorted(p for p in path.rglob("*") if p.is_file())
    if sum(p.stat().st_size for p in files) <= _LOCAL_FULL_HASH_LIMIT:
        return tree_fingerprint(path)
    return stable_hash([[str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns] for p in files])
