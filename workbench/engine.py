"""The engine: turns a recipe into ordered steps, runs what is not cached, commits atomically.

Steps are the base model, each recipe stage, and a scoring step after every model (the base model
and each model-producing stage, per variant). Every step has an artifact key:

    key = sha256(step kind + config + input fingerprints + upstream keys + code version)

A finished step's directory carries ``artifact.json`` and was renamed into place, so a crash never
leaves something that looks finished; a killed stage resumes from checkpoints in its partial dir.
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from .io import stable_hash, tree_fingerprint
from .recipe import Recipe, StageSpec
from .stages import STAGES
from .stages.base import Artifact, Stage, StageContext
from .store import RunStore

SCORER_VERSION = "2"  # 2: failure detectors
CHECKPOINT_DIR = "checkpoints"  # the only part of a partial directory kept across attempts
TRACKED_LIBRARIES = ("torch", "transformers", "tokenizers", "peft", "accelerate", "sacrebleu", "gradio",
                     "bitsandbytes", "resiliparse", "fastwarc", "workbench")


@dataclass
class Step:
    """One unit of work with an artifact key."""

    id: str
    kind: str  # "base", a stage kind, or "score"
    key: str
    spec: StageSpec | None = None
    stage: Stage | None = None
    model_step: str | None = None  # for score steps: the step whose model is scored
    variant: str | None = None


def build_steps(recipe: Recipe) -> list[Step]:
    """The recipe's steps in execution order, with their artifact keys (nothing is run)."""
    base = Step("base", "base", stable_hash({"kind": "base", "model": base_fingerprint(recipe),
                                              "dtype": recipe.base.dtype}))
    steps = [base]
    steps += _score_steps(recipe, base, [None])
    upstream = [base.key]
    shared = {"languages": recipe.languages.model_dump(), "seed": recipe.seed}
    for spec in recipe.stages:
        stage = STAGES[spec.kind](spec.config)
        key = stable_hash({
            "kind": spec.kind, "version": stage.version, "config": spec.config.model_dump(mode="json"),
            "inputs": stage.input_fingerprints(), "upstream": upstream, **shared,
        })
        step = Step(spec.id, spec.kind, key, spec=spec, stage=stage)
        steps.append(step)
        upstream = [*upstream, key]
        steps += _score_steps(recipe, step, stage.model_variants())
    return steps


def _score_steps(recipe: Recipe, model_step: Step, variants: list[str | None]) -> list[Step]:
    if recipe.eval.lm is None and recipe.eval.mt is None:
        return []
    eval_key = stable_hash({"eval": recipe.eval.model_dump(mode="json"), "sets": _eval_fingerprints(recipe)})
    steps = []
    for variant in variants:
        step_id = f"score:{model_step.id}" + (f"/{variant}" if variant else "")
        key = stable_hash({"kind": "score", "version": SCORER_VERSION, "eval": eval_key,
                           "model": model_step.key, "variant": variant})
        steps.append(Step(step_id, "score", key, model_step=model_step.id, variant=variant))
    return steps


def _eval_fingerprints(recipe: Recipe) -> dict[str, str]:
    sets = {cfg.sets for cfg in (recipe.eval.lm, recipe.eval.mt) if cfg is not None}
    if recipe.eval.mt is not None and recipe.eval.mt.lid_seed is not None:
        sets.add(recipe.eval.mt.lid_seed)
    return {str(path): tree_fingerprint(path) for path in sorted(sets)}


def base_fingerprint(recipe: Recipe) -> str:
    """Identity of the base weights without downloading or converting anything."""
    source = recipe.base.model
    if source.startswith("hf:"):
        return source  # a hub id (with optional @revision); the snapshot's commit is in the manifest
    if source.startswith("gguf:"):
        return f"gguf:{tree_fingerprint(Path(source[5:]))}"
    if Path(source).is_dir():
        return f"local:{tree_fingerprint(Path(source))}"
    from .models import REGISTRY

    entry = REGISTRY.get(source)
    package = getattr(entry, "package", None)
    try:
        version = metadata.version(package) if package else "?"
    except metadata.PackageNotFoundError:
        version = "not-installed"
    return f"registry:{source}:{version}"


# -- planning ---------------------------------------------------------------------------------------------


def step_dir(store: RunStore, step: Step) -> Path:
    if step.kind == "score":
        return store.score_dir(step.id.replace(":", "-").replace("/", "-"), step.key)
    return store.artifact_dir(step.id, step.key)


def partial_dir(store: RunStore, step: Step) -> Path:
    if step.kind == "score":
        return store.partial_score_dir(step.id.replace(":", "-").replace("/", "-"), step.key)
    return store.partial_dir(step.id, step.key)


def plan(recipe: Recipe, store: RunStore) -> list[tuple[Step, str]]:
    """Each step with its status: ``cached``, ``resume`` (checkpoints exist) or ``run``."""
    out = []
    for step in build_steps(recipe):
        if step.kind == "base" or RunStore.is_complete(step_dir(store, step)):
            status = "cached" if step.kind != "base" else "base"
        elif (partial_dir(store, step) / CHECKPOINT_DIR).is_dir():
            status = "resume"
        else:
            status = "run"
        out.append((step, status))
    return out


# -- running ---------------------------------------------------------------------------------------------


@dataclass
class RunResult:
    store: RunStore
    steps: list[dict[str, Any]]
    scoreboard: list[dict[str, Any]]


def run_recipe(recipe: Recipe, workspace: Path, *, device: str | None = None, progress: bool = True,
               echo: Callable[[str], None] = print) -> RunResult:
    """Run every step that is not cached; return the step table and the scoreboard."""
    from .models import pick_device

    store = RunStore(workspace, recipe.name)
    device = pick_device(device)
    with store.lock():
        return _Runner(recipe, store, device, progress, echo).run()


class _Runner:
    def __init__(self, recipe: Recipe, store: RunStore, device: str, progress: bool,
                 echo: Callable[[str], None]) -> None:
        self.recipe, self.store, self.device, self.progress, self.echo = recipe, store, device, progress, echo
        self.artifacts: dict[str, Artifact] = {}
        self.table: list[dict[str, Any]] = []
        self.started = time.time()

    def run(self) -> RunResult:
        steps = build_steps(self.recipe)
        self.store.log_event("run_started", device=self.device, steps=[s.id for s in steps])
        self._write_manifest(steps, status="running")
        try:
            for index, step in enumerate(steps):
                self._run_step(index, step)
                self._write_manifest(steps, status="running")
        except BaseException as err:
            self.store.log_event("run_failed", error=f"{type(err).__name__}: {err}")
            self._write_manifest(steps, status="failed")
            raise
        board = self._scoreboard(steps)
        self.store.write_scoreboard(board)
        self._write_manifest(steps, status="finished")
        self.store.log_event("run_finished", seconds=round(time.time() - self.started, 2))
        return RunResult(self.store, self.table, board)

    # -- one step -------------------------------------------------------------------------------------
    def _run_step(self, index: int, step: Step) -> None:
        if step.kind == "base":
            self.artifacts[step.id] = self._base_artifact(step)
            self._record(step, "base", 0.0)
            return
        final = step_dir(self.store, step)
        if RunStore.is_complete(final):
            self.artifacts[step.id] = Artifact(step.id, step.kind, step.key, final, RunStore.read_artifact(final))
            self.store.log_event("step_cached", step=step.id, key=step.key)
            self._record(step, "cached", 0.0)
            self.echo(f"[{step.id}] cached ({final.name})")
            return
        partial = partial_dir(self.store, step)
        resuming = self._prepare_partial(partial)
        self.store.log_event("step_started", step=step.id, key=step.key, resume=resuming)
        self.echo(f"[{step.id}] {'resuming' if resuming else 'running'} ...")
        t0 = time.time()
        record = self._execute(index, step, partial)
        seconds = round(time.time() - t0, 2)
        record.update(step=step.id, kind=step.kind, key=step.key, seconds=seconds, finished=time.time())
        RunStore.commit(partial, final, record)
        self._drop_stale_partials(step, final)
        self.artifacts[step.id] = Artifact(step.id, step.kind, step.key, final, record)
        self.store.log_event("step_finished", step=step.id, key=step.key, seconds=seconds)
        self._record(step, "ran", seconds)
        self.echo(f"[{step.id}] done in {seconds:.1f}s")

    def _execute(self, index: int, step: Step, partial: Path) -> dict[str, Any]:
        from .modeling import seed_everything

        seed = self.recipe.seed + index
        seed_everything(seed)
        if step.kind == "score":
            return self._score(step, partial)
        ctx = StageContext(
            recipe=self.recipe, step_id=step.id, key=step.key, out_dir=partial,
            upstream=[self.artifacts[s] for s in self.artifacts if not s.startswith("score:")],
            device=self.device, dtype=self.recipe.base.dtype, seed=seed,
            log=lambda event, **f: self.store.log_event(event, step=step.id, **f), progress=self.progress,
        )
        return step.stage.run(ctx)

    def _score(self, step: Step, partial: Path) -> dict[str, Any]:
        from .evaluate.scorer import score_model
        from .io import atomic_write_json
        from .modeling import load_for_eval

        artifact = self.artifacts[step.model_step]
        ref = next(m for m in artifact.models() if m.variant == step.variant)
        model, tokenizer = load_for_eval(ref, device=self.device, dtype=self.recipe.base.dtype)
        stage = step.model_step
        records = score_model(model, tokenizer, self.recipe.eval, stage=stage, variant=step.variant,
                              out_dir=partial, progress=self.progress)
        atomic_write_json(partial / "scores.json", records)
        return {"models": [], "scores": "scores.json", "stage": stage, "variant": step.variant}

    def _base_artifact(self, step: Step) -> Artifact:
        from .models import resolve_model

        resolved = resolve_model(self.recipe.base.model)
        record = {"models": [{"path": str(resolved.path), "variant": None}], "source": resolved.source,
                  "fingerprint": resolved.fingerprint}
        return Artifact(step.id, "base", step.key, resolved.path, record)

    @staticmethod
    def _prepare_partial(partial: Path) -> bool:
        """Keep only checkpoints of an interrupted attempt; anything else half-written is discarded."""
        resuming = (partial / CHECKPOINT_DIR).is_dir()
        if partial.exists():
            for child in partial.iterdir():
                if child.name != CHECKPOINT_DIR:
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
        partial.mkdir(parents=True, exist_ok=True)
        return resuming

    @staticmethod
    def _drop_stale_partials(step: Step, final: Path) -> None:
        prefix = f".partial-{final.name.rsplit('-', 1)[0]}-"
        for stale in final.parent.glob(prefix + "*"):
            shutil.rmtree(stale, ignore_errors=True)

    # -- bookkeeping -----------------------------------------------------------------------------------
    def _record(self, step: Step, status: str, seconds: float) -> None:
        path = self.artifacts[step.id].path
        self.table.append({"id": step.id, "kind": step.kind, "key": step.key, "status": status,
                           "seconds": seconds, "path": str(path) if path else None})

    def _scoreboard(self, steps: list[Step]) -> list[dict[str, Any]]:
        board: list[dict[str, Any]] = []
        for step in steps:
            if step.kind == "score":
                path = self.artifacts[step.id].path / "scores.json"
                board.extend(json.loads(path.read_text(encoding="utf-8")))
        return board

    def _write_manifest(self, steps: list[Step], status: str) -> None:
        recipe = self.recipe
        self.store.write_manifest({
            "name": recipe.name,
            "status": status,
            "recipe_path": str(recipe.path),
            "recipe": resolved_recipe(recipe),
            "recipe_as_written": recipe.raw,
            "seed": recipe.seed,
            "seeds": {s.id: recipe.seed + i for i, s in enumerate(steps)},
            "device": self.device,
            "host": {"python": platform.python_version(), "platform": platform.platform()},
            "versions": library_versions(),
            "keys": {s.id: s.key for s in steps},
            "steps": self.table + [
                {"id": s.id, "kind": s.kind, "key": s.key, "status": "pending", "seconds": None}
                for s in steps[len(self.table):]
            ],
            "base": self.artifacts["base"].record if "base" in self.artifacts else None,
            "started": self.started,
            "updated": time.time(),
        })


def resolved_recipe(recipe: Recipe) -> dict[str, Any]:
    """The recipe with defaults filled in and paths made absolute."""
    header = recipe.model_dump(mode="json", exclude={"stages", "path", "raw"})
    header["stages"] = [{spec.kind: spec.config.model_dump(mode="json")} for spec in recipe.stages]
    return header


def library_versions() -> dict[str, str]:
    out = {}
    for name in TRACKED_LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out
