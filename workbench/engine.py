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

from .distributed import World
from .errors import WorkbenchError
from .io import stable_hash, tree_fingerprint
from .recipe import Recipe, StageSpec
from .stages import STAGES
from .stages.base import Artifact, Stage, StageContext
from .store import RunStore

# Bump when a model's scores change for the same model and eval config. Covers: the detectors and their
# calibration on the references, per-sentence files, surprisal, spBLEU and per-script BLEU tokenizers, chat
# prompts, bf16 where native, generation budgets from characters with truncation counted.
SCORER_VERSION = "6"
FLOOR_VERSION = "1"
CONTAMINATION_VERSION = "1"
SCORING_KINDS = ("score", "floor", "contamination")  # steps that write scores, not artifacts
CHECKPOINT_DIR = "checkpoints"  # the only part of a partial directory kept across attempts
TRACKED_LIBRARIES = ("torch", "transformers", "tokenizers", "peft", "accelerate", "sacrebleu", "gradio",
                     "bitsandbytes", "resiliparse", "fastwarc", "workbench")


@dataclass
class Step:
    """One unit of work with an artifact key."""

    id: str
    kind: str  # "base", a stage kind, or one of SCORING_KINDS
    key: str
    spec: StageSpec | None = None
    stage: Stage | None = None
    model_step: str | None = None  # for scoring steps: the step whose model (or data) is scored
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
            "kind": spec.kind, "version": stage.version,
            "config": spec.config.model_dump(mode="json", exclude=key_exclusions(stage.key_exclude)),
            "inputs": stage.input_fingerprints(), "upstream": upstream, **shared,
        })
        step = Step(spec.id, spec.kind, key, spec=spec, stage=stage)
        steps.append(step)
        upstream = [*upstream, key]
        steps += _contamination_steps(recipe, step)
        steps += _floor_steps(recipe, step)
        steps += _score_steps(recipe, step, stage.model_variants())
    return steps


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


def _contamination_steps(recipe: Recipe, stage_step: Step) -> list[Step]:
    """A contamination check after every stage that trains on data, if the recipe scores anything."""
    cfg = recipe.eval.contamination
    if cfg is None or (recipe.eval.lm is None and recipe.eval.mt is None) or not stage_step.stage.trains_on_data:
        return []
    key = stable_hash({"kind": "contamination", "version": CONTAMINATION_VERSION, "stage": stage_step.key,
                       "sentences": _eval_selection(recipe), "config": cfg.model_dump(mode="json")})
    return [Step(f"contamination:{stage_step.id}", "contamination", key, model_step=stage_step.id)]


def _floor_steps(recipe: Recipe, stage_step: Step) -> list[Step]:
    """The character n-gram floor, trained on a crawl stage's corpora, scored on the LM sets."""
    lm = recipe.eval.lm
    if lm is None or lm.floor is None or stage_step.kind != "crawl":
        return []
    key = stable_hash({"kind": "floor", "version": FLOOR_VERSION, "crawl": stage_step.key,
                       "lm": lm.model_dump(mode="json"), "sets": _eval_fingerprints(recipe)})
    return [Step(f"floor:{stage_step.id}", "floor", key, model_step=stage_step.id,
                 variant=f"char-{lm.floor.order}gram")]


def _eval_selection(recipe: Recipe) -> dict[str, Any]:
    """What decides which evaluation sentences are scored (not how): the contamination check's input."""
    lm, mt = recipe.eval.lm, recipe.eval.mt
    return {
        "lm": lm.model_dump(mode="json", include={"sets", "split", "languages", "max_sentences"}) if lm else None,
        "mt": mt.model_dump(mode="json", include={"sets", "split", "exemplar_split", "directions", "max_sentences",
                                                  "shots"}) if mt else None,
        "sets": _eval_fingerprints(recipe),
    }


def _eval_key(recipe: Recipe) -> str:
    return stable_hash({"eval": recipe.eval.model_dump(mode="json", exclude={"contamination"}),
                        "sets": _eval_fingerprints(recipe)})


def _score_steps(recipe: Recipe, model_step: Step, variants: list[str | None]) -> list[Step]:
    if recipe.eval.lm is None and recipe.eval.mt is None:
        return []
    eval_key = _eval_key(recipe)
    steps = []
    for variant in variants:
        step_id = f"score:{model_step.id}" + (f"/{variant}" if variant else "")
        key = stable_hash({"kind": "score", "version": SCORER_VERSION, "eval": eval_key,
                           "model": model_step.key, "variant": variant})
        steps.append(Step(step_id, "score", key, model_step=model_step.id, variant=variant))
    return steps


def _eval_fingerprints(recipe: Recipe) -> dict[str, str]:
    sets = {str(cfg.sets) for cfg in (recipe.eval.lm, recipe.eval.mt) if cfg is not None}
    if recipe.eval.mt is not None and recipe.eval.mt.lid_seed is not None:
        sets.add(str(recipe.eval.mt.lid_seed))
    return {source: source if source.startswith("hf:") else tree_fingerprint(Path(source)) for source in sorted(sets)}


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
    if step.kind in SCORING_KINDS:
        return store.score_dir(step.id.replace(":", "-").replace("/", "-"), step.key)
    return store.artifact_dir(step.id, step.key)


def partial_dir(store: RunStore, step: Step) -> Path:
    if step.kind in SCORING_KINDS:
        return store.partial_score_dir(step.id.replace(":", "-").replace("/", "-"), step.key)
    return store.partial_dir(step.id, step.key)


def preflight(recipe: Recipe, *, check_model: bool = True) -> list[str]:
    """What can be checked before any work: the base model source (without loading or downloading it; skipped
    when ``check_model`` is False) and each stage's own data (:meth:`Stage.preflight`). Raises the first problem as
    one message naming the recipe file and field; returns warnings (e.g. skipped lines) for the caller to show."""
    from .errors import DataError

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
    from .errors import ModelSourceError
    from .models import check_source

    try:
        check_source(recipe.base.model)
    except ModelSourceError as err:
        raise ModelSourceError(f"{recipe.path}: base.model: {err}") from None


def plan(recipe: Recipe, store: RunStore) -> list[tuple[Step, str]]:
    """Each step with its status: ``cached``, ``resume`` (checkpoints exist) or ``run``."""
    from .marks import with_marks

    out = []
    for step in build_steps(with_marks(recipe, store.root)):
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
               echo: Callable[[str], None] = print, executor: str | None = None) -> RunResult:
    """Run every step that is not cached; return the step table and the scoreboard.

    ``executor`` (``serial``, ``local``, ``ray``) overrides where the crawl's shards run.
    """
    from .distributed import init_from_launcher
    from .marks import with_marks

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
        self.artifacts: dict[str, Artifact] = {}
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
        if _joins(step, self.world):
            self.world.barrier()  # helper processes join this stage now
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
        if step.kind == "floor":
            return self._floor(step, partial)
        if step.kind == "contamination":
            return self._contamination(step, partial)
        ctx = StageContext(
            recipe=self.recipe, step_id=step.id, key=step.key, out_dir=partial,
            upstream=self._stage_artifacts(),
            device=self.device, dtype=self.recipe.base.dtype, seed=seed,
            log=lambda event, **f: self._log(event, step=step.id, **f), progress=self.progress,
            options=self.options,
        )
        return step.stage.run(ctx)

    def _log(self, event: str, **fields: Any) -> None:
        self.store.log_event(event, **fields)

    def _publish_adapters(self, steps: list[Step], board: list[dict[str, Any]]) -> None:
        """Variants of the training stages, with their scores, to ``adapters/<run>/<variant>/`` beside
        the workspace (see :mod:`workbench.publish`)."""
        from .publish import publish_adapters

        trained = [(s.id, self.artifacts[s.id].path, self.artifacts[s.id].record) for s in steps
                   if s.stage is not None and s.id in self.artifacts
                   and self.artifacts[s.id].record.get("stats", {}).get("variants")]
        if trained:
            home = self.options.get("adapters_home") or self.store.workspace.resolve().parent / "adapters"
            for path in publish_adapters(self.recipe.name, trained, board, Path(home), owner=self.store.root):
                self.store.log_event("adapter_published", path=str(path))
                if path.parent.name != self.recipe.name:  # another workspace's run of this name owns adapters/<run>
                    self.echo(f"adapters of '{self.recipe.name}' published to {path.parent} (adapters/"
                              f"{self.recipe.name} belongs to a run of another workspace)")

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
        result = {"models": [], "scores": "scores.json", "stage": stage, "variant": step.variant}
        gate = self._gate(step, records)
        if gate is not None:
            atomic_write_json(partial / "gate.json", gate)
            result["gate"] = {"failures": gate["failures"], "action": gate["action"]}
        return result

    def _gate(self, step: Step, records: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The scored stage's gate against the scores of the model it started from; raises when it fails."""
        from .errors import GateError

        stage_step = self.steps[step.model_step]
        before = self._scores_before(stage_step)
        if stage_step.stage is None or before is None:
            return None
        gate = stage_step.stage.gate(before, records, self.recipe.languages)
        if gate is None:
            return None
        for failure in gate["failures"]:
            self.store.log_event("gate_failed" if gate["action"] == "fail" else "gate_warning",
                                 step=step.id, message=failure)
            self.echo(f"[{step.id}] gate: {failure}")
        if gate["failures"] and gate["action"] == "fail":
            raise GateError(f"stage '{stage_step.id}' failed its gate: " + "; ".join(gate["failures"])
                            + f". Change the stage's config, or set '{stage_step.id}: gate: action: warn' "
                              "to accept the regression.")
        return gate

    def _scores_before(self, stage_step: Step) -> list[dict[str, Any]] | None:
        """Score records of the last single model scored before ``stage_step``."""
        import json

        previous = None
        for step in self.steps.values():
            if step.id == stage_step.id:
                break
            if step.kind == "score" and step.variant is None and step.id in self.artifacts:
                previous = self.artifacts[step.id]
        if previous is None or previous.path is None:
            return None
        return json.loads((previous.path / "scores.json").read_text(encoding="utf-8"))

    def _stage_artifacts(self) -> list[Artifact]:
        return [a for a in self.artifacts.values() if a.kind not in SCORING_KINDS]

    def _floor(self, step: Step, partial: Path) -> dict[str, Any]:
        from .evaluate.floor import train_floor_models
        from .evaluate.scorer import floor_sentence_rows, records_from_sentences
        from .io import atomic_write_json, write_jsonl
        from .store import LM_SENTENCES_FILE

        crawl = self.artifacts[step.model_step]
        lm = self.recipe.eval.lm
        models, sizes = train_floor_models(crawl, lm.languages, lm.floor, partial / "models", progress=self.progress)
        missing = [code for code in lm.languages if code not in models]
        if missing:
            self.store.log_event("floor_without_corpus", step=step.id, languages=missing)
        rows = floor_sentence_rows(models, lm)
        write_jsonl(partial / LM_SENTENCES_FILE, rows)
        records = records_from_sentences(self.recipe.eval, {"stage": "floor", "variant": step.variant}, rows, [],
                                         floor=True)
        atomic_write_json(partial / "scores.json", records)
        return {"models": [], "scores": "scores.json", "stage": "floor", "variant": step.variant,
                "training_chars": sizes, "no_corpus": missing}

    def _contamination(self, step: Step, partial: Path) -> dict[str, Any]:
        from .evaluate.contamination import check_contamination
        from .io import atomic_write_json

        artifact = self.artifacts[step.model_step]
        files = self.steps[step.model_step].stage.training_data(artifact, self._stage_artifacts())
        cfg = self.recipe.eval.contamination
        report, records = check_contamination(self.recipe.eval, files, cfg, stage=step.model_step,
                                              progress=self.progress)
        atomic_write_json(partial / "contamination.json", report)
        atomic_write_json(partial / "scores.json", records)
        flagged = sum(s["flagged"] for s in report["sets"].values())
        self.echo(f"[{step.id}] {flagged} evaluation sentence(s) found in {len(files)} training file(s)")
        return {"models": [], "scores": "scores.json", "report": "contamination.json", "stage": step.model_step,
                "flagged": flagged}

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

    def _write_partial_scoreboard(self, steps: list[Step]) -> None:
        """The scores of the steps that finished before a failure (e.g. the base model's, when the tokenizer's
        gate stops the run), so that ``workbench scores`` shows what was measured."""
        finished = [step for step in steps if step.id in self.artifacts]
        try:
            self.store.write_scoreboard(self._scoreboard(finished))
        except (OSError, ValueError, KeyError) as err:  # the run's own error is the one to report
            self.store.log_event("scoreboard_not_written", error=f"{type(err).__name__}: {err}")

    def _scoreboard(self, steps: list[Step]) -> list[dict[str, Any]]:
        """Every scoring step's records; with ``contamination.exclude`` the model scores are recomputed
        from their per-sentence files without every evaluation sentence any training corpus contained."""
        from .evaluate.contamination import flagged_sentences
        from .evaluate.scorer import rescore_directory

        cfg = self.recipe.eval.contamination
        exclusion = None
        if cfg is not None and cfg.exclude:
            reports = [self.artifacts[s.id].path / "contamination.json" for s in steps if s.kind == "contamination"]
            exclusion = flagged_sentences(reports)
        board: list[dict[str, Any]] = []
        for step in steps:
            record = self.artifacts[step.id].record
            if step.kind not in SCORING_KINDS:  # a stage may report numbers too (e.g. corpus sizes)
                if record.get("scores") and self.artifacts[step.id].path is not None:
                    board.extend(json.loads((self.artifacts[step.id].path / record["scores"]).read_text("utf-8")))
                continue
            path = self.artifacts[step.id].path
            if exclusion is not None and step.kind != "contamination":
                head = {"stage": record["stage"], "variant": record["variant"]}
                board.extend(rescore_directory(self.recipe.eval, head, path, exclusion, floor=step.kind == "floor"))
            else:
                board.extend(json.loads((path / "scores.json").read_text(encoding="utf-8")))
        from .scoreboard import ordered

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
            "base": self.artifacts["base"].record if "base" in self.artifacts else None,
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
            if step.kind == "base":
                self.artifacts[step.id] = self._base_artifact(step)
            final = step_dir(self.store, step)
            if _joins(step, self.world):
                self.world.barrier()  # rank 0: before running this stage, or done with it if it was cached
                if not RunStore.is_complete(final):
                    self._execute(index, step, partial_dir(self.store, step))
                    self.world.barrier()  # rank 0 committed it
            else:
                self.world.barrier()
            if step.kind != "base" and RunStore.is_complete(final):
                self.artifacts[step.id] = Artifact(step.id, step.kind, step.key, final, RunStore.read_artifact(final))
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
