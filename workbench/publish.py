"""Trained adapters published where people look for them: ``adapters/<run>/<variant>/``.

``adapters/`` sits beside the workspace, so two workspaces in one folder share it: ``adapters/<run>/.owner``
names the run folder that published there, and a run of the same name in another workspace publishes to
``adapters/<run>@<workspace>-<hash>/`` instead of overwriting (see :func:`run_home`).

Each is a standard peft adapter directory (``adapter_config.json`` + weights; a ``full`` variant is
a whole model directory) with ``metadata.json``: base model and tokenizer hashes, data hash, the
variant's config, trainable parameters, training time, peak memory, and its scores from the run's
scoreboard. :func:`merge_adapter` turns one into a standalone model directory.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import DataError
from .io import atomic_write_json, atomic_write_text
from .models import load_model

OWNER_FILE = ".owner"


def run_home(home: Path, run: str, owner: Path) -> Path:
    """The folder of ``run``'s adapters under ``home``: ``home/run`` unless another run folder (``owner``: the run's
    own folder in its workspace) published there, then ``home/run@<workspace>-<hash of the owner's path>``."""
    owner_text = str(Path(owner).resolve())
    plain = home / run
    marker = plain / OWNER_FILE
    if not plain.exists() or (marker.is_file() and marker.read_text(encoding="utf-8").strip() == owner_text):
        return plain
    if not marker.is_file() and not any(plain.iterdir()):
        return plain
    digest = hashlib.sha256(owner_text.encode("utf-8")).hexdigest()[:8]
    return home / f"{run}@{Path(owner_text).parent.name}-{digest}"


@dataclass(frozen=True)
class TrainedVariant:
    """One trained variant of a stage, as it is published: the folder to copy (a peft adapter, or a whole
    model for a ``full`` variant) and the metadata it is published with."""

    stage: str
    name: str
    source: Path
    metadata: dict[str, Any]


def recorded_variants(stage: str, directory: Path, record: Mapping[str, Any]) -> list[TrainedVariant]:
    """The variants an artifact record lists (``stats.variants`` with their metadata, and the ``models`` that
    name them), their folders inside the artifact ``directory``."""
    variants = record.get("stats", {}).get("variants", {})
    found = []
    for model in record.get("models", []):
        name = model.get("variant")
        rel = model.get("adapter") or model.get("path")
        if name and name in variants and rel:
            found.append(TrainedVariant(stage, name, directory / rel, variants[name]))
    return found


def publish_adapters(run: str, artifacts: list[tuple[str, Path, dict[str, Any]]], board: list[dict[str, Any]],
                     home: Path, owner: Path) -> list[Path]:
    """Publish every variant of the given (stage id, artifact dir, record) (see :func:`publish_variants`)."""
    trained = [v for stage, directory, record in artifacts for v in recorded_variants(stage, directory, record)]
    return publish_variants(run, trained, board, home, owner)


def publish_variants(run: str, trained: list[TrainedVariant], board: list[dict[str, Any]], home: Path,
                     owner: Path) -> list[Path]:
    """Copy every trained variant into :func:`run_home`'s ``variant`` folder (replacing this run's older copy
    atomically), its metadata extended with its scores; ``owner`` is the run's folder in its workspace, so that no
    other workspace's run of the same name is overwritten."""
    published = []
    folder = run_home(home, run, owner)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / OWNER_FILE, str(Path(owner).resolve()) + "\n")
    for variant in trained:
        name = variant.name
        target = folder / name
        tmp = target.with_name(f".{name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(variant.source, tmp)
        scores = [{k: r.get(k) for k in ("kind", "metric", "language", "direction", "value", "n") if k in r}
                  for r in board if r.get("stage") == variant.stage and r.get("variant") == name]
        atomic_write_json(tmp / "metadata.json", {**variant.metadata, "run": run, "stage": variant.stage,
                                                  "scores": scores})
        if target.exists():
            old = target.with_name(f".{name}.old")
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp.rename(target)
        published.append(target)
    return published


def merge_adapter(adapter: Path, out: Path, *, base: str | None = None, device: str | None = None) -> Path:
    """Merge the peft adapter in ``adapter`` into (a float copy of) its base model and save a plain
    model directory with the tokenizer at ``out``. ``base`` overrides the base recorded in metadata."""
    from peft import PeftModel

    meta_path = adapter / "metadata.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
    if not (adapter / "adapter_config.json").is_file():
        raise DataError(f"{adapter}: no adapter_config.json; a 'full' variant is already a standalone model")
    source = base or meta.get("base_model")
    if not source:
        raise DataError(f"{adapter}: metadata.json names no base_model; pass the base model with --base")
    model, tokenizer = load_model(Path(source) if Path(source).is_dir() else source, device=device, dtype="float32")
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if meta:
        atomic_write_json(tmp / "merged_from.json", {"adapter": str(adapter), "base_model": str(source), **{
            k: meta[k] for k in ("variant", "run", "base_model_hash", "tokenizer_hash") if k in meta}})
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def recorded_base(named: Mapping[str, Path]) -> str:
    """The base model every adapter's ``metadata.json`` records (they must agree)."""
    bases = set()
    for name, directory in named.items():
        meta = directory / "metadata.json"
        recorded = json.loads(meta.read_text(encoding="utf-8")).get("base_model") if meta.is_file() else None
        if not recorded:
            raise DataError(f"adapter '{name}': {directory} records no base model (metadata.json); pass base=...")
        bases.add(recorded)
    if len(bases) != 1:
        raise DataError(f"the adapters record different base models ({', '.join(sorted(bases))}); pass base=...")
    return bases.pop()
