"""The stage contract: every stage kind has a pydantic ``Config``, a code ``version`` and ``run``.

A stage reads upstream artifacts from its :class:`StageContext`, writes everything into
``ctx.out_dir`` (a temporary directory the engine renames into place only when ``run`` returns)
and returns the artifact record: the models it produced (paths relative to ``out_dir``) and any
outputs and statistics worth keeping.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..schema import StrictModel

if TYPE_CHECKING:
    from ..recipe import Recipe


@dataclass(frozen=True)
class ModelRef:
    """A model a stage produced: a Hugging Face directory, optionally with a peft adapter on top."""

    path: Path
    adapter: Path | None = None
    variant: str | None = None


@dataclass
class Artifact:
    """A finished stage output: its directory and its record (``artifact.json``)."""

    step_id: str
    kind: str
    key: str
    path: Path | None
    record: dict[str, Any] = field(default_factory=dict)

    def models(self) -> list[ModelRef]:
        """Models in this artifact, paths made absolute."""
        refs = []
        for entry in self.record.get("models", []):
            base = Path(entry["path"])
            adapter = entry.get("adapter")
            refs.append(
                ModelRef(
                    path=base if base.is_absolute() else self.path / base,
                    adapter=(self.path / adapter) if adapter else None,
                    variant=entry.get("variant"),
                )
            )
        return refs


@dataclass
class StageContext:
    """What a running stage may use: recipe, upstream artifacts, its output dir, device, logging."""

    recipe: Recipe
    step_id: str
    key: str
    out_dir: Path
    upstream: list[Artifact]
    device: str
    dtype: str
    seed: int
    log: Callable[..., None]
    progress: bool = True
    options: dict[str, Any] = field(default_factory=dict)  # run-wide overrides that do not change results

    def latest_model(self) -> ModelRef:
        """The most recent single model upstream (the base model if no stage produced one yet)."""
        for artifact in reversed(self.upstream):
            models = [m for m in artifact.models() if m.adapter is None]
            main = [m for m in models if m.variant is None]
            if len(models) == 1 or len(main) == 1:  # e.g. cpt's model beside its EMA variant
                return (main or models)[0]
        raise RuntimeError("no upstream model: the engine always provides the base model")

    def artifact(self, kind: str) -> Artifact:
        """The most recent upstream artifact of a stage kind."""
        for artifact in reversed(self.upstream):
            if artifact.kind == kind:
                return artifact
        raise RuntimeError(f"stage '{self.step_id}' needs an upstream '{kind}' stage")

    def write_json(self, name: str, obj: Any) -> Path:
        from ..io import atomic_write_json

        path = self.out_dir / name
        atomic_write_json(path, obj)
        return path

    def read_json(self, name: str) -> Any:
        return json.loads((self.out_dir / name).read_text(encoding="utf-8"))


class Stage:
    """Base class of every stage kind (register it in ``workbench.stages.STAGES``)."""

    kind: ClassVar[str]
    version: ClassVar[str] = "1"
    Config: ClassVar[type[StrictModel]]
    requires: ClassVar[tuple[str, ...]] = ()  # stage kinds that must come earlier in the recipe
    produces_model: ClassVar[bool] = False
    distributed: ClassVar[bool] = False  # every data-parallel process runs it (else rank 0 alone)
    trains_on_data: ClassVar[bool] = False  # its training data is checked for evaluation sentences
    key_exclude: ClassVar[frozenset[str]] = frozenset()  # config fields that do not change the result
    # (dotted for a nested field: "gate.action")

    def __init__(self, config: StrictModel) -> None:
        self.config = config

    def model_variants(self) -> list[str | None]:
        """Names of the models this stage produces (``[None]``: one model; ``[]``: none)."""
        return [None] if self.produces_model else []

    def input_fingerprints(self) -> dict[str, str]:
        """Content fingerprints of the files this stage's config names (part of the artifact key)."""
        return {}

    def training_data(self, artifact: Artifact, upstream: list[Artifact]) -> list[Path]:
        """The text files (``.txt``/``.jsonl``) this finished stage trained on or produced for training."""
        return []

    def gate(self, before: list[dict[str, Any]], after: list[dict[str, Any]], languages: Any) -> dict[str, Any] | None:
        """A quality gate on this stage's model scores against the model it started from
        (``languages``: the recipe's ``languages:`` section).

        Returns ``{"rows": [...], "failures": [messages], "action": "fail" | "warn"}``, or None (no gate).
        """
        return None

    def preflight(self) -> list[str]:
        """Check what can be checked before hours of work (the data this stage will read, not what earlier
        stages make): raise a :class:`~workbench.errors.DataError` for what would stop it; return warnings."""
        return []

    def run(self, ctx: StageContext) -> dict[str, Any]:
        """Do the work into ``ctx.out_dir``; return the record: ``{"models": [...], "outputs": ..., "stats": ...}``."""
        raise NotImplementedError
