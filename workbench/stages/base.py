"""The step contract: every step kind has a pydantic ``Config``, a code ``version`` and ``run``.

A step reads upstream artifacts from its :class:`StageContext`, writes everything into
``ctx.out_dir`` (a temporary directory the engine renames into place only when ``run`` returns)
and returns the artifact record: the models it produced (paths relative to ``out_dir``) and any
outputs, statistics and score records worth keeping.

Two roles share this contract and one registry (:data:`workbench.stages.STEPS`): a :class:`Stage` is a
kind a recipe lists under ``stages:``; a :class:`ScoringStep` (score, floor, contamination) is added by
the engine after every step it applies to (its :class:`Subject`: the base model or a stage) and writes
scores. Each declares what its artifact key depends on (:meth:`Stage.key_inputs`); the engine adds the
kind and the code version, hashes, runs, commits and resumes every step the same way.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..io import atomic_write_json
from ..schema import StrictModel
from ..store import scoring_step_id

if TYPE_CHECKING:
    from ..publish import TrainedVariant
    from ..recipe import Recipe


@dataclass(frozen=True)
class ModelRef:
    """A model a stage produced: a Hugging Face directory, optionally with a peft adapter on top."""

    path: Path
    adapter: Path | None = None
    variant: str | None = None


@dataclass
class Artifact:
    """A finished step's output: its directory and its record (``artifact.json``)."""

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


def _silent(message: str) -> None:
    """An ``echo`` that shows nothing."""


@dataclass
class StageContext:
    """What a running step may use: recipe, upstream artifacts, its output dir, device, logging."""

    recipe: Recipe
    step_id: str
    key: str
    out_dir: Path
    upstream: list[Artifact]  # the base model's and the stages' finished artifacts, in run order
    device: str
    dtype: str
    seed: int
    log: Callable[..., None]  # log(event, **fields): one line of the run's events
    progress: bool = True
    options: dict[str, Any] = field(default_factory=dict)  # run-wide overrides that do not change results
    finished: list[Artifact] = field(default_factory=list)  # every finished step, scoring steps too, in run order
    echo: Callable[[str], None] = _silent  # a line for the person running the recipe

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

    def finished_step(self, step_id: str) -> Artifact:
        """The artifact of the finished step ``step_id``."""
        for artifact in self.finished:
            if artifact.step_id == step_id:
                return artifact
        raise RuntimeError(f"step '{self.step_id}' needs step '{step_id}', which has not finished")

    def write_json(self, name: str, obj: Any) -> Path:
        path = self.out_dir / name
        atomic_write_json(path, obj)
        return path

    def read_json(self, name: str) -> Any:
        return json.loads((self.out_dir / name).read_text(encoding="utf-8"))


def key_exclusions(names: frozenset[str]) -> dict[str, Any]:
    """``Stage.key_exclude`` as pydantic's ``exclude``: a dotted name (``gate.action``) leaves out a nested field."""
    tree: dict[str, Any] = {}
    for name in sorted(names):
        node = tree
        *parents, leaf = name.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = True
    return tree


def recorded_scores(artifact: Artifact) -> list[dict[str, Any]]:
    """The score records the file named by the artifact record's ``scores`` holds (none without one)."""
    name = artifact.record.get("scores")
    if not name or artifact.path is None:
        return []
    return json.loads((artifact.path / name).read_text(encoding="utf-8"))


class Stage:
    """Base class of every step kind; a recipe stage kind unless it is a :class:`ScoringStep` (register it with
    :func:`workbench.stages.register`)."""

    kind: ClassVar[str]
    version: ClassVar[str] = "1"
    Config: ClassVar[type[StrictModel]]
    requires: ClassVar[tuple[str, ...]] = ()  # stage kinds that must come earlier in the recipe
    produces_model: ClassVar[bool] = False
    produces_corpus: ClassVar[bool] = False  # per-language corpora in its record's outputs (stages.corpus reads them)
    distributed: ClassVar[bool] = False  # every data-parallel process runs it (else rank 0 alone)
    trains_on_data: ClassVar[bool] = False  # its training data is checked for evaluation sentences
    writes_scores: ClassVar[bool] = False  # a scoring step: its folder is under the run's scores/
    key_exclude: ClassVar[frozenset[str]] = frozenset()  # config fields that do not change the result
    # (dotted for a nested field: "gate.action")

    def __init__(self, config: StrictModel) -> None:
        self.config = config

    def key_inputs(self, recipe: Recipe, upstream: list[str]) -> dict[str, Any]:
        """What this step's artifact key depends on besides its kind and code version: the config (less
        ``key_exclude``), the fingerprints of the files it names, the upstream steps' keys (``upstream``, in
        order), the recipe's languages and seed."""
        return {"config": self.config.model_dump(mode="json", exclude=key_exclusions(self.key_exclude)),
                "inputs": self.input_fingerprints(), "upstream": upstream,
                "languages": recipe.languages.model_dump(), "seed": recipe.seed}

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

    def trained_variants(self, artifact: Artifact) -> list[TrainedVariant]:
        """The adapters (or whole-model variants) this finished stage trained, to publish beside the workspace
        with their scores (see :mod:`workbench.publish`); none by default."""
        return []

    def scoreboard_records(self, artifact: Artifact, finished: Sequence[Artifact]) -> list[dict[str, Any]]:
        """This finished step's records in the run's scoreboard (``finished``: every finished step of the run,
        for records that depend on other steps): by default those of its record's ``scores`` file."""
        return recorded_scores(artifact)

    def preflight(self) -> list[str]:
        """Check what can be checked before hours of work (the data this stage will read, not what earlier
        stages make): raise a :class:`~workbench.errors.DataError` for what would stop it; return warnings."""
        return []

    def run(self, ctx: StageContext) -> dict[str, Any]:
        """Do the work into ``ctx.out_dir``; return the record: ``{"models": [...], "outputs": ..., "stats": ...}``."""
        raise NotImplementedError


@dataclass(frozen=True)
class Subject:
    """The step a scoring step follows: the base model (``stage`` None) or a recipe stage."""

    id: str
    key: str
    stage: Stage | None = None


class ScoringStep(Stage):
    """A step the engine adds after each step it applies to (:meth:`follow`), scoring or checking that step's
    models or data; its record names a ``scores`` file, read into the scoreboard."""

    writes_scores = True

    def __init__(self, config: StrictModel, subject: Subject, variant: str | None = None) -> None:
        super().__init__(config)
        self.subject = subject
        self.variant = variant

    @property
    def step_id(self) -> str:
        """``<kind>:<subject>[/<variant>]``."""
        return scoring_step_id(self.kind, self.subject.id, self.variant)

    @classmethod
    def follow(cls, recipe: Recipe, subject: Subject) -> list[ScoringStep]:
        """The steps of this kind after ``subject`` (none when it does not apply)."""
        return []
