"""A finished (or running) run as pandas tables and matplotlib figures: the notebook API's view of the store.

``wb.load_run("runs/sardinian-demo")`` returns a :class:`Run`. Every method reads the run store again
(nothing is cached), so a run that is still training shows its latest state. The Gradio app reads
runs through the same class.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from . import scoreboard
from .compare import Comparison, compare_run
from .errors import RunError
from .evaluate.detector_names import SENTENCE_FLAGS
from .recipe import MTEvalConfig
from .store import (
    DEFAULT_WORKSPACE,
    SCORE_STEP,
    TRANSLATIONS_FILE,
    RunStore,
    is_scoring_step,
    open_run,
    scored_system,
    scoring_step_id,
)

FLAG_NAMES = SENTENCE_FLAGS  # the translations table's flag_<name> columns
TRANSLATION_COLUMNS = ["system", "stage", "variant", "direction", "index", "source", "reference", "hypothesis",
                       "chrf", *(f"flag_{f}" for f in FLAG_NAMES), "prompt"]
CURVE_COLUMNS = ["stage", "step", "tokens", "language", "bits_per_byte"]


def load_run(path: str | Path, workspace: str | Path = DEFAULT_WORKSPACE) -> Run:
    """Open a run by its directory or by its name inside ``workspace``.

    >>> run = wb.load_run(RUN_DIR)
    >>> run.status()
    'finished'
    """
    return Run(open_run(path, Path(workspace)))


@dataclass(frozen=True)
class CorpusCard:
    """The crawl stage's data card: sizes per language, drops by reason, language-score histograms."""

    languages: pd.DataFrame  # language, documents, bytes, chars, words
    dropped: pd.DataFrame  # reason, documents
    histograms: dict[str, dict[str, list[float]]]  # language -> {"bins": [...], "counts": [...]}
    markdown: str
    corpus_dir: Path

    def _repr_markdown_(self) -> str:
        return self.markdown

    def documents(self, language: str) -> Iterator[dict[str, Any]]:
        """The kept documents of ``language`` (text, score, source, offset, url), streamed.

        >>> document = next(wb.load_run(RUN_DIR).corpus_card().documents("srd_Latn"))
        >>> {"text", "score", "source"} <= set(document)
        True
        """
        path = self.corpus_dir / f"{language}.jsonl"
        if not path.is_file():
            known = ", ".join(self.languages["language"]) or "none"
            raise RunError(f"{self.corpus_dir}: no corpus for '{language}'; languages: {known}")
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle):
                if line.strip():
                    yield {"line": number, **json.loads(line)}


class Run:
    """One run of a recipe, read from its store."""

    def __init__(self, store: RunStore) -> None:
        self.store = store

    # -- identity -------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.store.name

    @property
    def root(self) -> Path:
        return self.store.root

    def status(self) -> str:
        """``finished``, ``failed``, ``running``, ``interrupted`` or ``new``."""
        return self.store.status()

    def manifest(self) -> dict[str, Any]:
        return self.store.manifest()

    def steps(self) -> list[dict[str, Any]]:
        """The manifest's steps, each with its directory resolved inside this run (``path``)."""
        return self.store.steps()

    def step(self, step_id: str) -> dict[str, Any]:
        for step in self.steps():
            if step["id"] == step_id:
                return step
        known = ", ".join(s["id"] for s in self.steps())
        raise RunError(f"{self.root}: no step '{step_id}'; steps: {known}")

    def timeline(self) -> pd.DataFrame:
        """The steps in order: id, kind, status, seconds."""
        rows = [{"step": s["id"], "kind": s.get("kind"), "status": s.get("status"), "seconds": s.get("seconds")}
                for s in self.steps()]
        return pd.DataFrame(rows, columns=["step", "kind", "status", "seconds"])

    # -- scores ---------------------------------------------------------------------------------------
    def records(self) -> list[dict[str, Any]]:
        """The scoreboard records as stored (flat dicts)."""
        return self.store.scoreboard()

    def scoreboard(self) -> pd.DataFrame:
        """Tidy scoreboard: one row per record (stage, variant, kind, language, direction, metric, value, n,
        ...), stages in pipeline order.

        >>> board = wb.load_run(RUN_DIR).scoreboard()
        >>> set(board["kind"]) >= {"lm", "mt"}
        True
        """
        return scoreboard.to_frame(self.records())

    def table(self, kind: str | None = None) -> pd.DataFrame:
        """The wide table the CLI prints: (stage[/variant], metric) x language/direction, with deltas
        against the base model as text cells."""
        return scoreboard.pivot_with_deltas(self.records(), kind=kind)

    def systems(self) -> list[str]:
        """Every scored model as ``stage`` or ``stage/variant``, in pipeline order."""
        scored = [(scored_system(s["id"]), s.get("status")) for s in self.steps()]
        return [system for (kind, system), status in scored if kind == SCORE_STEP and status in ("ran", "cached")]

    def recipe(self) -> dict[str, Any]:
        """The recipe as resolved when the run started (paths absolute)."""
        return self.manifest().get("recipe", {})

    def mt_eval(self) -> MTEvalConfig | None:
        """The translation settings the run was scored with (``eval.mt``, validated), or None without them."""
        mt = (self.recipe().get("eval") or {}).get("mt")
        return MTEvalConfig.model_validate(mt) if mt else None

    def models(self) -> dict[str, tuple[Path, Path | None]]:
        """Every model this run produced, ``{system: (model directory, adapter directory or None)}``, with
        ``base`` first; systems are named as in the scoreboard (``stage`` or ``stage/variant``)."""
        out: dict[str, tuple[Path, Path | None]] = {}
        for step in self.steps():
            if step.get("kind") == "base" and step.get("path"):
                out["base"] = (step["path"], None)
            elif step.get("path") and RunStore.is_complete(step["path"]) and not is_scoring_step(step["id"]):
                for ref in RunStore.read_artifact(step["path"]).get("models", []):
                    model = Path(ref["path"]) if Path(ref["path"]).is_absolute() else step["path"] / ref["path"]
                    adapter = step["path"] / ref["adapter"] if ref.get("adapter") else None
                    name = step["id"] + (f"/{ref['variant']}" if ref.get("variant") else "")
                    out[name] = (model.resolve(), adapter)
        return out

    def adapters(self, home: Path | None = None) -> dict[str, Path]:
        """The adapters of this run, ``{variant: directory}``: those under ``home/<run>/`` when given (e.g.
        ``./adapters``), else the published ones (``adapter_published`` events), else the run store's copies."""
        if home is not None:
            mine = Path(home) / self.name
            found = {p.parent.name: p.parent for p in sorted(mine.glob("*/adapter_config.json"))}
            if found:
                return found
        published = {}
        for event in self.store.events():
            if event.get("event") == "adapter_published" and Path(event.get("path", "")).is_dir():
                published[Path(event["path"]).name] = Path(event["path"])
        if published:
            return published
        for step in self.steps():
            if step.get("kind") == "finetune" and step.get("path") and (step["path"] / "adapters").is_dir():
                published |= {p.parent.name: p.parent for p in sorted((step["path"] / "adapters").glob("*/*.json"))
                              if p.name == "adapter_config.json"}
        return published

    def directions(self) -> list[str]:
        return sorted({r["direction"] for r in self.records() if r.get("kind") == "mt"})

    def translations(self, direction: str | None = None) -> pd.DataFrame:
        """Every scored model's translations, one row per sentence: source, reference, hypothesis,
        sentence chrF++ and the detector flags (``flag_off_target`` ... ``None``: not judged).

        >>> frame = wb.load_run(RUN_DIR).translations("eng_Latn-srd_Latn")
        >>> list(frame.columns[:4])
        ['system', 'stage', 'variant', 'direction']
        """
        rows = []
        for system in self.systems():
            for row in self.system_translations(system):
                if direction is None or row["direction"] == direction:
                    rows.append(_translation_row(system, row))
        if direction is not None and not rows and direction not in self.directions():
            raise RunError(f"{self.root}: no direction '{direction}'; directions: {', '.join(self.directions())}")
        return pd.DataFrame(rows, columns=TRANSLATION_COLUMNS)

    def system_translations(self, system: str) -> list[dict[str, Any]]:
        """The stored translation rows of one scored model (``stage`` or ``stage/variant``)."""
        step = next((s for s in self.steps() if s["id"] == scoring_step_id(SCORE_STEP, system)), None)
        path = step["path"] / TRANSLATIONS_FILE if step and step.get("path") else None
        if path is None or not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def compare(self, stage: str | None = None, baseline: str | None = None, n_samples: int = 1000) -> Comparison:
        """The variants of a fine-tuning stage compared (see :func:`workbench.compare.compare_run`).

        >>> wb.load_run(RUN_DIR).compare(n_samples=50).stage
        'finetune'
        """
        return compare_run(self.store, stage=stage, baseline=baseline, n_samples=n_samples)

    # -- corpus and training ----------------------------------------------------------------------------
    def corpus_card(self, stage: str | None = None) -> CorpusCard:
        """The data card of the crawl stage (``stage``: its id, default the first crawl stage).

        >>> card = wb.load_run(RUN_DIR).corpus_card()
        >>> list(card.languages.columns)
        ['language', 'documents', 'bytes', 'chars', 'words']
        """
        step = self._stage_of_kind("crawl", stage)
        corpus = step["path"] / "corpus"
        card = json.loads((corpus / "card.json").read_text(encoding="utf-8"))
        languages = pd.DataFrame(
            [{"language": code, "documents": info.get("docs"), "bytes": info.get("bytes"),
              "chars": info.get("chars"), "words": info.get("words")}
             for code, info in card.get("languages", {}).items()],
            columns=["language", "documents", "bytes", "chars", "words"])
        stats = json.loads((corpus / "stats.json").read_text(encoding="utf-8"))
        dropped = pd.DataFrame(sorted(stats.get("dropped", {}).items(), key=lambda kv: -kv[1]),
                               columns=["reason", "documents"])
        histograms = {code: info["score_histogram"] for code, info in card.get("languages", {}).items()
                      if info.get("score_histogram")}
        markdown_path = corpus / "card.md"
        markdown = markdown_path.read_text(encoding="utf-8") if markdown_path.is_file() else ""
        return CorpusCard(languages, dropped, histograms, markdown, corpus)

    def curves(self, stage: str | None = None) -> pd.DataFrame:
        """Held-out bits per byte per language during continued pretraining: stage, step, tokens, language,
        bits_per_byte (every cpt stage, or only ``stage``).

        >>> curves = wb.load_run(RUN_DIR).curves()
        >>> list(curves.columns)
        ['stage', 'step', 'tokens', 'language', 'bits_per_byte']
        """
        rows = []
        for step in self.steps():
            if step.get("kind") != "cpt" or (stage and step["id"] != stage) or not step.get("path"):
                continue
            path = step["path"] / "curves.json"
            if not path.is_file():
                continue
            for point in json.loads(path.read_text(encoding="utf-8")).get("points", []):
                for language, bpb in point.get("bpb", {}).items():
                    rows.append({"stage": step["id"], "step": point["step"], "tokens": point.get("tokens"),
                                 "language": language, "bits_per_byte": bpb})
        return pd.DataFrame(rows, columns=CURVE_COLUMNS)

    def fertility(self, stage: str | None = None) -> pd.DataFrame:
        """The tokenizer stage's fertility report: language, when (before/after), tokens per word and per
        character, byte-fallback rate."""
        step = self._stage_of_kind("tokenizer", stage)
        report = json.loads((step["path"] / "fertility.json").read_text(encoding="utf-8"))
        rows = [{"language": code, "when": when, **values}
                for code, sides in report.items() for when, values in sides.items()]
        return pd.DataFrame(rows)

    def _stage_of_kind(self, kind: str, stage: str | None) -> dict[str, Any]:
        for step in self.steps():
            wanted = step.get("kind") == kind and (stage is None or step["id"] == stage)
            if wanted and step.get("path") and step["path"].exists():
                return step
        raise RunError(f"{self.root}: no finished {kind} stage" + (f" '{stage}'" if stage else ""))

    # -- plots ------------------------------------------------------------------------------------------
    def plot_lm(self, metric: str = "bits_per_byte") -> Figure:
        """Bits per byte (or ``metric``) per language across stages.

        >>> wb.load_run(RUN_DIR).plot_lm().axes[0].get_title()
        'bits per byte per language across stages'
        """
        return scoreboard.plot_lm(self.records(), metric=metric)

    def plot_mt(self, metric: str = "chrf++") -> Figure:
        """Translation ``metric`` per direction for every scored model, and the detector rates beside it.

        >>> len(wb.load_run(RUN_DIR).plot_mt("bleu").axes)
        2
        """
        return scoreboard.plot_mt(self.records(), metric=metric)

    def plot_curves(self) -> Figure:
        """The CPT curves: held-out bits per byte per language against training tokens.

        >>> wb.load_run(RUN_DIR).plot_curves().axes[0].get_xlabel()
        'training tokens'
        """
        return plot_curves(self.curves())

    # -- display ------------------------------------------------------------------------------------------
    def __repr__(self) -> str:
        return f"Run({self.name!r}, status={self.status()!r}, root={str(self.root)!r})"

    def _repr_html_(self) -> str:
        timeline = self.timeline()
        table = self.table()
        return (f"<h3>{html.escape(self.name)}</h3><p>status <b>{html.escape(self.status())}</b> · "
                f"{len(timeline)} steps · <code>{html.escape(str(self.root))}</code></p>"
                f"{table.to_html()}<details><summary>timeline</summary>{timeline.to_html(index=False)}</details>")


def _translation_row(system: str, row: dict[str, Any]) -> dict[str, Any]:
    stage, _, variant = system.partition("/")
    flags = row.get("flags") or {}
    return {"system": system, "stage": stage, "variant": variant or None, "direction": row["direction"],
            "index": row["index"], "source": row["source"], "reference": row["reference"],
            "hypothesis": row["hypothesis"], "chrf": row.get("chrf"),
            **{f"flag_{name}": flags.get(name) for name in FLAG_NAMES}, "prompt": row.get("prompt")}


def plot_curves(curves: pd.DataFrame) -> Figure:
    """One line per (cpt stage, language): held-out bits per byte against training tokens."""
    figure = Figure(figsize=(8, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set(title="held-out bits per byte during continued pretraining", xlabel="training tokens",
             ylabel="bits per byte (lower is better)")
    if curves.empty:
        axes.text(0.5, 0.5, "no curves (no cpt stage has run)", ha="center", va="center", transform=axes.transAxes)
        return figure
    several = curves["stage"].nunique() > 1
    for (stage, language), points in curves.groupby(["stage", "language"], sort=False):
        label = f"{stage}: {language}" if several else str(language)
        axes.plot(points["tokens"], points["bits_per_byte"], marker="o", label=label)
    axes.grid(True, alpha=0.3)
    axes.legend(title="language")
    return figure


__all__ = ["CorpusCard", "Run", "load_run", "plot_curves"]
