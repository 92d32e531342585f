"""The model sources this machine knows, for ``workbench models``: short names (installed or not), converted GGUF
files and the models in the Hugging Face hub cache."""

from __future__ import annotations

import json
import re
from pathlib import Path

from huggingface_hub import scan_cache_dir

from .cache import cache_home
from .directory import has_weights
from .gguf import SOURCE_MARKER, is_complete
from .registry import REGISTRY, RegistryModel


def list_sources() -> list[dict]:
    """Known sources for ``workbench models``: short names, converted GGUFs and HF hub cache entries."""
    converted = _converted_entries()
    rows = [_registry_row(entry, converted) for entry in REGISTRY.values()]
    rows += [_gguf_row(path, meta) for path, meta in converted if not meta.get("registry")]
    rows += _hub_rows()
    return rows


def _converted_entries() -> list[tuple[Path, dict]]:
    root = cache_home() / "models"
    out = []
    for path in sorted(root.glob("*")) if root.is_dir() else []:
        if path.name.startswith(".") or not is_complete(path):
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
        info = scan_cache_dir()
    except Exception:  # no cache yet, unreadable cache, ...: nothing to list
        return []
    rows = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model" or not repo.revisions:
            continue
        latest = max(repo.revisions, key=lambda r: r.last_modified)
        snapshot = Path(latest.snapshot_path)
        complete = (snapshot / "config.json").is_file() and has_weights(snapshot)
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

