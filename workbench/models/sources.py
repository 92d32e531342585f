"""Model sources: Hugging Face hub (``hf:<repo>[@revision]``), local directories, GGUF files (``gguf:<file>``) and
installable short names, each resolved to a local Hugging Face model directory (``config.json`` + weights +
tokenizer) plus a stable fingerprint of its weights."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelSourceError
from .directory import check_model_dir, local_fingerprint
from .gguf import converted_model
from .hub import hf_download, hf_snapshot, hf_unavailable, hub_offline
from .registry import REGISTRY


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
        return resolve_local(source, path)
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
        if hub_offline() and hf_snapshot(repo.strip(), revision.strip() or None, local_only=True) is None:
            raise hf_unavailable(repo.strip(), revision.strip() or None, "offline mode is on (HF_HUB_OFFLINE=1)")
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


def resolve_local(source: str, path: Path) -> ResolvedModel:
    """A local model directory, checked and fingerprinted."""
    path = path.expanduser().resolve()
    check_model_dir(path)
    return ResolvedModel(source=str(source), kind="local", path=path, fingerprint=local_fingerprint(path))


def _resolve_hf(source: str, spec: str) -> ResolvedModel:
    """A hub model: its cached snapshot, or one downloaded now unless the hub is offline."""
    repo, _, revision = spec.partition("@")
    repo, revision = repo.strip(), revision.strip() or None
    if not repo:
        raise ModelSourceError(f"model source {source!r} names no repository; expected hf:<org>/<name>"
                               f"[@revision]; {accepted_forms()}")
    path = hf_snapshot(repo, revision, local_only=True)
    if path is None:
        if hub_offline():
            raise hf_unavailable(repo, revision, "offline mode is on (HF_HUB_OFFLINE=1)")
        path = hf_download(repo, revision)
    check_model_dir(path)
    return ResolvedModel(source=str(source), kind="hf", path=path, fingerprint=path.name)


def _resolve_gguf(source: str, gguf: Path, *, kind: str, registry: str | None = None) -> ResolvedModel:
    path, digest = converted_model(str(source), gguf, registry)
    return ResolvedModel(source=str(source), kind=kind, path=path, fingerprint=digest)
