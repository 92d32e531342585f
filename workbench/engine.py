"""The engine: turns a recipe into ordered steps, runs what is not cached, commits atomically.

Steps are the base model, each recipe stage, and after the base model and after each stage the scoring
steps that apply to it (:data:`workbench.stages.SCORING`: contamination, floor, score per model variant).
Every step but the base model is a plug-in of :mod:`workbench.stages` and has an artifact key:

    key = sha256(step kind + code version + what the step declares it depends on)

(a stage: config, input fingerprints, upstream keys; a scoring step: its subject's key and the evaluation).
Every step runs the same way: a partial directory, ``run(ctx)``, then the directory with ``artifact.json``
renamed into place, so a crash never leaves something that looks finished; a killed step resumes from
checkpoints in its partial dir.
"""

from __future__ import annotations

import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from .distributed import World, init_from_launcher
from .errors import DataError, ModelSourceError, WorkbenchError
from .io import stable_hash, tree_fingerprint
from .marks import with_marks
from .models import REGISTRY, check_source, resolve_model, seed_everything
from .publish import publish_variants
from .recipe import Recipe, StageSpec
from .scoreboard.records import ordered
from .stages import SCORING, STAGES
from .stages.base import Artifact, ScoringStep, Stage, StageContext, Subject, key_exclusions
from .store import RunStore, adapters_home

CHECKPOINT_DIR = "checkpoints"  # the only part of a partial directory kept across attempts
TRACKED_LIBRARIES = ("torch", "transformers", "tokenizers", "peft", "accelerate", "sacrebleu", "gradio",
                     "bitsandbytes", "resiliparse", "fastwarc", "workbench")
BASE = "base"  # the base model's step id and kind
SCORING_KINDS = tuple(SCORING)  # steps that write scores, not artifacts

__all__ = ["CHECKPOINT_DIR", "SCORING_KINDS", "RunResult", "Step", "build_steps", "key_exclusions", "plan",
           "preflight", "run_recipe"]


@dataclass
class Step:
    """One unit of work with an artifact key: the base model (``stage`` None) or a step plug-in."""

    id: str
    kind: str  # "base", a stage kind or a scoring kind
    key: str
    spec: StageSpec | None = None  # a recipe stage's entry
    stage: Stage | None = None  # the plug-in that runs it

    @property
    def writes_scores(self) -> bool:
        return self.stage is not None and self.stage.writes_scores


def build_steps(recipe: Recipe) -> list[Step]:
    """The recipe's steps in execution order, with their artifact keys (nothing is run)."""
    base = Step(BASE, BASE, stable_hash({"kind": BASE, "model": base_fingerprint(recipe),
                                         "dtype": recipe.base.dtype}))
    steps = [base, *_scoring_steps(recipe, Subject(base.id, base.key))]
    upstream = [base.key]
    for spec in recipe.stages:
        stage = STAGES[spec.kind](spec.config)
        step = Step(spec.id, spec.kind, step_key(stage, recipe, upstream), spec=spec, stage=stage)
        steps.append(step)
        upstream = [*upstream, step.key]
        steps += _scoring_steps(recipe, Subject(step.id, step.key, stage))
    return steps


def step_key(stage: Stage, recipe: Recipe, upstream: list[str]) -> str:
    """A step's artifact key: its kind, code version and what it declares it depends on."""
    return stable_hash({"kind": stage.kind, "version": stage.version, **stage.key_inputs(recipe, upstream)})


def _scoring_steps(recipe: Recipe, subject: Subject) -> list[Step]:
    """The scoring steps after ``subject``, in registry order (each kind decides whether it applies)."""
    followers: list[ScoringStep] = [step for kind in SCORING for step in SCORING[kind].follow(recipe, subject)]
    return [Step(step.step_id, step.kind, step_key(step, recipe, []), stage=step) for step in followers]


def base_fingerprint(recipe: Recipe) -> str:
    """Identity of the base weights without downloading or converting anything."""
    source = recipe.base.model
    if source.startswith("hf:"):
        return source  # a hub id (with optional @revision); the snapshot's commit is in the manifest
    if source.startswith("gguf:"):
        return f"gguf:{tree_fingerprint(Path(source[5:]))}"
    if Path(source).is_dir():
        return f"local:{tree_fingerprint(Path(source))}"
    entry = REGISTRY.get(source)
    package = getattr(entry, "package", None)
    try:
        version = metadata.version(package) if package else "?"
    except metadata.PackageNotFoundError:
        version = "not-installed"
    return f"registry:{source}:{version}"


# -- planning ---------------------------------------------------------------------------------------------


def step_dir(store: RunStore, step: Step) -> Path:
    """Where a step's finished directory is (or will be) in the run store."""
    return store.step_dir(step.id, step.key, scores=step.writes_scores)


def partial_dir(store: RunStore, step: Step) -> Path:
    """Where a step writes while it runs."""
    return store.partial_step_dir(step.id, step.key, scores=step.writes_scores)


def preflight(recipe: Recipe, *, check_model: bool = True) -> list[str]:
    """What can be checked before any work: the base model source (without loading or downloading it; skipped
    when ``check_model`` is False) and each stage's own data (:meth:`Stage.preflight`). Raises the first problem as
    one message naming the recipe file and field; returns warnings (e.g. skipped lines) for the caller to show."""
    if check_model:
        check_base_model(recipe)
    warnings = []
    for index, spec in enumerate(recipe.stages):
        where = f"{recipe.path}: stages[{index}].{spec.kind}"
        try:
            warnings += [f"{where}: {w}" for w in STAGES[spec.kind](spec.config).preflight()]
        except DataError as err:
            raise DataError(f"{where}: {err}") from None
    return warnings


def check_base_model(recipe: Recipe) -> None:
    """The base model source resolves (without loading or downloading it), or one message naming the field."""
    try:
        check_source(recipe.base.model)
    except ModelSourceError as err:
        raise ModelSourceError(f"{recipe.path}: base.model: {err}") from None


def plan(recipe: Recipe, store: RunStore) -> list[tuple[Step, str]]:
    """Each step with its status: ``base``, ``cached``, ``resume`` (checkpoints exist) or ``run``."""
    out = []
    for step in build_steps(with_marks(recipe, store.root)):
        if step.stage is None:
            status = "base"
        elif RunStore.is_complete(step_dir(store, step)):
            status = "cached"
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
               echo: Callable[[str], None] = print, executor: str | None = None) -> RunResult:
    """Run every step that is not cached; return the step table and the scoreboard.

    ``executor`` (``serial``, ``local``, ``ray``) overrides where the crawl's shards run.
    """
    store = RunStore(workspace, recipe.name)
    try:
        warnings = preflight(recipe)
    except WorkbenchError as err:  # recorded in the run's events like any failure, before any work
        store.log_event("run_failed", error=f"{type(err).__name__}: {err}")
        raise
    for warning in warnings:
        echo(f"warning: {warning}")
    recipe = with_marks(recipe, store.root)  # documents marked bad in the app leave the next crawl
    world, device = init_from_launcher(device)
    options = {"executor": executor} if executor else {}
    if not world.main:  # a data-parallel helper process: rank 0 owns the store
        return _Follower(recipe, store, device, False, lambda _: None, options, world).run()
    with store.lock():
        return _Runner(recipe, store, device, progress, echo, options, world).run()


class _Runner:
    def __init__(self, recipe: Recipe, store: RunStore, device: str, progress: bool,
                 echo: Callable[[str], None], options: dict[str, Any] | None = None,
                 world: World | None = None) -> None:
        self.recipe, self.store, self.device, self.progress, self.echo = recipe, store, device, progress, echo
        self.options = options or {}
        self.world = world or World()
        self.artifacts: dict[str, Artifact] = {}  # finished steps, in run order
        self.steps: dict[str, Step] = {}
        self.table: list[dict[str, Any]] = []
        self.started = time.time()

    def run(self) -> RunResult:
        steps = build_steps(self.recipe)
        self.steps = {step.id: step for step in steps}
        self.store.log_event("run_started", device=self.device, steps=[s.id for s in steps])
        self._write_manifest(steps, status="running")
        try:
            for index, step in enumerate(steps):
                self._run_step(index, step)
                self._write_manifest(steps, status="running")
                self.world.barrier()  # helper processes read what this step committed
        except BaseException as err:
            self.store.log_event("run_failed", error=f"{type(err).__name__}: {err}")
            self._write_partial_scoreboard(steps)
            self._write_manifest(steps, status="failed")
            raise
        board = self._scoreboard(steps)
        self.store.write_scoreboard(board)
        self._publish_adapters(steps, board)
        self._write_manifest(steps, status="finished")
        self.store.log_event("run_finished", seconds=round(time.time() - self.started, 2))
        return RunResult(self.store, self.table, board)

    # -- one step -------------------------------------------------------------------------------------
    def _run_step(self, index: int, step: Step) -> None:
        if step.stage is None:
            self.artifacts[step.id] = self._base_artifact(step)
            self._record(step, "base", 0.0)
            return
        final = step_dir(self.store, step)
        if RunStore.is_complete(final):
            self.artifacts[step.id] = self._finished_artifact(step, final)
            self.store.log_event("step_cached", step=step.id, key=step.key)
            self._record(step, "cached", 0.0)
            self.echo(f"[{step.id}] cached ({final.name})")
            return
        partial = partial_dir(self.store, step)
        resuming = self._prepare_partial(partial)
        if _joins(step, self.world):
            self.world.barrier()  # helper processes join this stage now
        self.store.log_event("step_started", step=step.id, key=step.key, resume=resuming)
        self.echo(f"[{step.id}] {'resuming' if resuming else 'running'} ...")
        t0 = time.time()
        record = self._execute(index, step, partial)
        seconds = round(time.time() - t0, 2)
        record.update(step=step.id, kind=step.kind, key=step.key, seconds=seconds, finished=time.time())
        RunStore.commit(partial, final, record)
        RunStore.drop_stale_partials(final)
        self.artifacts[step.id] = Artifact(step.id, step.kind, step.key, final, record)
        self.store.log_event("step_finished", step=step.id, key=step.key, seconds=seconds)
        self._record(step, "ran", seconds)
        self.echo(f"[{step.id}] done in {seconds:.1f}s")

    def _execute(self, index: int, step: Step, partial: Path) -> dict[str, Any]:
        """Run one step's plug-in into ``partial`` with the recipe's seed for this step; return its record."""
        seed = self.recipe.seed + index
        seed_everything(seed)
        ctx = StageContext(
            recipe=self.recipe, step_id=step.id, key=step.key, out_dir=partial,
            upstream=self._stage_artifacts(),
            device=self.device, dtype=self.recipe.base.dtype, seed=seed,
            log=lambda event, **f: self._log(event, step=step.id, **f), progress=self.progress,
            options=self.options, finished=list(self.artifacts.values()), echo=self.echo,
        )
        return step.stage.run(ctx)

    def _log(self, event: str, **fields: Any) -> None:
        self.store.log_event(event, **fields)

    def _publish_adapters(self, steps: list[Step], board: list[dict[str, Any]]) -> None:
        """The variants each stage reports it trained, with their scores, to ``adapters/<run>/<variant>/``
        beside the workspace (see :mod:`workbench.publish`)."""
        trained = [variant for step in steps if step.stage is not None and step.id in self.artifacts
                   for variant in step.stage.trained_variants(self.artifacts[step.id])]
        if trained:
            home = self.options.get("adapters_home") or adapters_home(self.store.workspace)
            for path in publish_variants(self.recipe.name, trained, board, Path(home), owner=self.store.root):
                self.store.log_event("adapter_published", path=str(path))
                if path.parent.name != self.recipe.name:  # another workspace's run of this name owns adapters/<run>
                    self.echo(f"adapters of '{self.recipe.name}' published to {path.parent} (adapters/"
                              f"{self.recipe.name} belongs to a run of another workspace)")

    def _stage_artifacts(self) -> list[Artifact]:
        """The base model's and the stages' finished artifacts (not the scoring steps'), in run order."""
        return [a for a in self.artifacts.values() if not self.steps[a.step_id].writes_scores]

    def _base_artifact(self, step: Step) -> Artifact:
        resolved = resolve_model(self.recipe.base.model)
        record = {"models": [{"path": str(resolved.path), "variant": None}], "source": resolved.source,
                  "fingerprint": resolved.fingerprint}
        return Artifact(step.id, step.kind, step.key, resolved.path, record)

    @staticmethod
    def _finished_artifact(step: Step, final: Path) -> Artifact:
        return Artifact(step.id, step.kind, step.key, final, RunStore.read_artifact(final))

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

    # -- bookkeeping -----------------------------------------------------------------------------------
    def _record(self, step: Step, status: str, seconds: float) -> None:
        path = self.artifacts[step.id].path
        self.table.append({"id": step.id, "kind": step.kind, "key": step.key, "status": status,
                           "seconds": seconds, "path": str(path) if path else None})

    def _write_partial_scoreboard(self, steps: list[Step]) -> None:
        """The scores of the steps that finished before a failure (e.g. the base model's, when the tokenizer's
        gate stops the run), so that ``workbench scores`` shows what was measured."""
        finished = [step for step in steps if step.id in self.artifacts]
        try:
            self.store.write_scoreboard(self._scoreboard(finished))
        except (OSError, ValueError, KeyError) as err:  # the run's own error is the one to report
            self.store.log_event("scoreboard_not_written", error=f"{type(err).__name__}: {err}")

    def _scoreboard(self, steps: list[Step]) -> list[dict[str, Any]]:
        """Every finished step's score records (:meth:`Stage.scoreboard_records`: a stage may report numbers
        too, e.g. corpus sizes), in the scoreboard's order."""
        finished = [self.artifacts[step.id] for step in steps]
        board: list[dict[str, Any]] = []
        for step in steps:
            if step.stage is not None:
                board.extend(step.stage.scoreboard_records(self.artifacts[step.id], finished))
        return ordered(board)

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
            "base": self.artifacts[BASE].record if BASE in self.artifacts else None,
            "started": self.started,
            "updated": time.time(),
        })


def _joins(step: Step, world: World) -> bool:
    """True when every data-parallel process runs this step (a training stage), not rank 0 alone."""
    return world.size > 1 and step.stage is not None and step.stage.distributed


class _Follower(_Runner):
    """A non-main process of a data-parallel launch: it follows rank 0 step by step, reads what rank 0
    committed, and joins the training stages (which write only from rank 0)."""

    def run(self) -> RunResult:
        steps = build_steps(self.recipe)
        self.steps = {step.id: step for step in steps}
        for index, step in enumerate(steps):
            if step.stage is None:
                self.artifacts[step.id] = self._base_artifact(step)
                self.world.barrier()
                continue
            final = step_dir(self.store, step)
            if _joins(step, self.world):
                self.world.barrier()  # rank 0: before running this stage, or done with it if it was cached
                if not RunStore.is_complete(final):
                    self._execute(index, step, partial_dir(self.store, step))
                    self.world.barrier()  # rank 0 committed it
            else:
                self.world.barrier()
            if RunStore.is_complete(final):
                self.artifacts[step.id] = self._finished_artifact(step, final)
        return RunResult(self.store, [], [])

    def _log(self, event: str, **fields: Any) -> None:
        pass


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
