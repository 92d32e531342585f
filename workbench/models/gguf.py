"""GGUF files as Hugging Face models: each file is de-quantized once into a safetensors directory under
``cache_home()/models`` (keyed by its sha256, marked complete by ``SOURCE_MARKER``), so later loads are plain
``from_pretrained`` calls."""

from __future__ import annotations

import datetime as _dt
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import ModelSourceError
from ..io import atomic_write_json
from .cache import cache_home, file_lock, sha256_of

if TYPE_CHECKING:
    from transformers import PreTrainedModel

log = logging.getLogger(__name__)

SOURCE_MARKER = "workbench-source.json"


def converted_dir(gguf: Path, sha256: str) -> Path:
    """Where a GGUF file with this sha256 is (or will be) converted to."""
    return cache_home() / "models" / f"{gguf.stem}-{sha256[:16]}"


def is_complete(path: Path) -> bool:
    """True if ``path`` is a finished conversion (its marker and config are written last)."""
    return (path / SOURCE_MARKER).is_file() and (path / "config.json").is_file()


def converted_model(source: str, gguf: Path, registry: str | None = None) -> tuple[Path, str]:
    """The converted directory of ``gguf`` and the file's sha256, converting it first if no process has (under a
    lock, so two processes never convert one file at once)."""
    gguf = gguf.resolve()
    if not gguf.is_file():
        raise ModelSourceError(f"GGUF file {gguf} does not exist; expected gguf:<path to a .gguf file>")
    digest = sha256_of(gguf)
    dest = converted_dir(gguf, digest)
    if not is_complete(dest):
        with file_lock(dest.name):
            if not is_complete(dest):  # another process may have finished it while we waited
                _convert_gguf(gguf, digest, dest, source=str(source), registry=registry)
    return dest, digest


def _convert_gguf(gguf: Path, digest: str, dest: Path, *, source: str, registry: str | None) -> None:
    """De-quantize ``gguf`` into ``dest`` via a temp dir beside it and one atomic rename (lock held)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    for stale in dest.parent.glob(f".{dest.name}.tmp-*"):  # left by a killed conversion
        shutil.rmtree(stale, ignore_errors=True)
    if dest.exists():  # incomplete (no marker): never reuse it
        shutil.rmtree(dest)
    log.info("converting %s to a safetensors model in %s (once)", gguf, dest)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        _write_converted(gguf, tmp)
        atomic_write_json(tmp / SOURCE_MARKER, {
            "source": source, "registry": registry, "gguf": str(gguf), "gguf_sha256": digest,
            "converted_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "transformers": _transformers_version()})
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache may be shared
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _transformers_version() -> str:
    import transformers

    return transformers.__version__


def _write_converted(gguf: Path, out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    except (OSError, ValueError, KeyError, NotImplementedError) as exc:
        raise ModelSourceError(f"cannot convert GGUF file {gguf}: {exc}") from exc
    # The loaded model carries a GGUF quantization marker that makes save_pretrained refuse it.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    generation = getattr(model, "generation_config", None)
    if generation is not None and not (out / "generation_config.json").exists():
        generation.save_pretrained(out)
    _check_reload(model, out, gguf)


def _check_reload(model: PreTrainedModel, out: Path, gguf: Path) -> None:
    """Reload the written directory: tied embeddings must stay tied and logits must match."""
    from transformers import AutoModelForCausalLM

    again = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    if _ties(model) and not _ties(again):
        raise ModelSourceError(f"converting {gguf}: tied input/output embeddings came back untied")
    ids = torch.tensor([[1, 2, 3, 4]]) % model.config.vocab_size
    with torch.no_grad():
        same = torch.allclose(model(ids).logits, again(ids).logits, atol=1e-4)
    if not same:
        raise ModelSourceError(f"converting {gguf}: the saved model does not reproduce the GGUF's outputs")


def _ties(model: Any) -> bool:
    inp, outp = model.get_input_embeddings(), model.get_output_embeddings()
    return outp is not None and inp.weight.data_ptr() == outp.weight.data_ptr()

