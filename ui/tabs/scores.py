"""Scores: stages x languages/directions with deltas against the base model, the plots, and human ratings.

- The table is the terminal's (``workbench scores``): ``value (Δ vs base)``, green where a stage is better
  than the base model and red where it is worse; token perplexity says that it depends on the tokenizer.
- Translation metrics carry the number of sentences and a 95% bootstrap interval: a percentile bootstrap
  over the stored per-sentence results (:data:`BOOTSTRAP_SAMPLES` resamples, seed :data:`BOOTSTRAP_SEED`).
- The character n-gram floor is a dashed reference line per language in the bits-per-byte plot, not a stage.
- A run that did not finish is labelled so, and shows only what its latest attempt measured
  (:mod:`ui.attempt`), never an earlier attempt's numbers.
- Human ratings from the Review tab appear as ``human_*`` rows (kind ``human``) beside the automatic
  metrics, with the reviewers' agreement below.
- The tab refreshes itself every few seconds when the run's files change (a run writing scores, a reviewer
  saving a rating).
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr
import numpy as np
import pandas as pd
from sacrebleu.metrics import BLEU, CHRF

from workbench import review, scoreboard
from workbench.evaluate.mt import SPBLEU_TOKENIZE, bleu_tokenizer, spbleu_unavailable
from workbench.run import Run, plot_curves
from workbench.store import TRANSLATIONS_FILE

from ..attempt import Attempt, latest_attempt
from ..context import UNREADABLE, AppContext, Refresh, escape

if TYPE_CHECKING:
    from matplotlib.figure import Figure

KINDS = ("all", "lm", "mt", "detector", "human", "tokenizer", "corpus")
FLOOR_STAGE = "floor"
INTERVAL_METRICS = ("chrf++", "bleu", "spbleu")
BOOTSTRAP_SAMPLES = 1000
BOOTSTRAP_SEED = 12345
TOKENIZER_DEPENDENT = {"token_perplexity": "token_perplexity (depends on the tokenizer)"}
BETTER, WORSE = "color: #15803d; font-weight: 600", "color: #b91c1c; font-weight: 600"
STYLES = {1: BETTER, -1: WORSE, 0: ""}
REFRESH_SECONDS = 5.0
QUEUE = "scores"  # the concurrency id of the events that write the table


# -- which records are current -------------------------------------------------------------------------------
def attempt(ctx: AppContext, name: str | None) -> Attempt | None:
    run = ctx.run(name)
    return latest_attempt(run) if run is not None else None


def records(ctx: AppContext, name: str | None, current: Attempt | None = None) -> list[dict[str, Any]]:
    """The scores of the run's latest attempt plus the human-rating records."""
    run = ctx.run(name)
    if run is None:
        return []
    current = current or latest_attempt(run)
    return [*current.records, *review.records(review.load_ratings(run.root))]


# -- bootstrap intervals of the translation metrics ------------------------------------------------------------
def mt_metric(metric: str, target: str) -> Any:
    """The sacrebleu metric the scorer used for ``metric`` into ``target`` (None: not computable here)."""
    if metric == "chrf++":
        return CHRF(word_order=2)
    if metric == "bleu":
        return BLEU(tokenize=bleu_tokenizer(target))
    if metric == "spbleu" and spbleu_unavailable() is None:
        return BLEU(tokenize=SPBLEU_TOKENIZE)
    return None


def bootstrap_interval(metric: Any, hypotheses: list[str], references: list[str],
                       samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """The 2.5th and 97.5th percentiles of the corpus ``metric`` over ``samples`` resamples of the sentences
    (with replacement; the resamples are ``numpy.random.default_rng(seed).integers(0, n, (samples, n))``).

    Each sentence's sufficient statistics are computed once (sacrebleu's own bootstrap does the same), so a
    resample costs a sum, not a rescoring."""
    stats = np.asarray(metric._extract_corpus_statistics(hypotheses, [references]), dtype=float)
    picks = np.random.default_rng(seed).integers(0, len(hypotheses), size=(samples, len(hypotheses)))
    scores = [metric._compute_score_from_stats(list(stats[pick].sum(axis=0))).score for pick in picks]
    low, high = np.percentile(scores, [2.5, 97.5])
    return float(low), float(high)


@functools.lru_cache(maxsize=512)
def _interval(path: str, modified: int, direction: str, metric_name: str, value: float) -> tuple[float, float] | None:
    """The interval of one system's ``metric_name`` in ``direction`` from its translations file (cached while the
    file is unchanged); None when the stored score is not the one of these sentences (e.g. scored without the
    contaminated ones)."""
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = sorted((r for r in rows if r.get("direction") == direction), key=lambda r: r["index"])
    metric = mt_metric(metric_name, direction.split("-")[1])
    if not rows or metric is None:
        return None
    hypotheses, references = [r["hypothesis"] for r in rows], [r["reference"] for r in rows]
    if not math.isclose(metric.corpus_score(hypotheses, [references]).score, value, abs_tol=1e-6):
        return None
    return bootstrap_interval(metric, hypotheses, references)


def intervals(run: Run, shown: list[dict[str, Any]]) -> dict[tuple[str, str, str], tuple[float, float]]:
    """``{(row, metric, direction): (low, high)}`` for the translation metrics among ``shown``."""
    paths = {s["id"].removeprefix("score:"): s["path"] / TRANSLATIONS_FILE for s in run.steps()
             if s.get("kind") == "score" and s.get("path") is not None}
    out = {}
    for record in shown:
        if record.get("kind") != "mt" or record.get("metric") not in INTERVAL_METRICS or record.get("value") is None:
            continue
        row = scoreboard.row_label(record)
        path = paths.get(row)
        try:
            found = _interval(str(path), path.stat().st_mtime_ns, record["direction"], record["metric"],
                              float(record["value"])) if path is not None and path.is_file() else None
        except UNREADABLE:
            found = None
        if found is not None:
            out[(row, record["metric"], record["direction"])] = found
    return out


# -- the table ---------------------------------------------------------------------------------------------------
def _mt_cell(cell: str, interval: tuple[float, float] | None, n: Any) -> str:
    if not cell or cell == scoreboard.SKIPPED_CELL:
        return cell
    if interval is not None:
        cell += f" · 95% CI {interval[0]:.2f}–{interval[1]:.2f}"
    return cell + (f" · n={int(n)}" if n is not None and n == n else "")


def table(ctx: AppContext, name: str | None, kind: str = "all", current: Attempt | None = None) -> pd.DataFrame:
    """The scores of one kind (or all) as (stage, variant, metric) x language/direction, ``value (Δ vs base)``,
    translation metrics with their interval and n."""
    return _table_and_styles(ctx, name, kind, current)[0]


def styled_table(ctx: AppContext, name: str | None, kind: str = "all", current: Attempt | None = None) -> Any:
    """:func:`table` coloured like the terminal table (a pandas Styler: better green, worse red)."""
    frame, styles = _table_and_styles(ctx, name, kind, current)
    if styles is None:
        return frame
    return frame.style.apply(lambda _: styles, axis=None).hide(axis="index")


def _table_and_styles(ctx: AppContext, name: str | None, kind: str,
                      current: Attempt | None) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    run = ctx.run(name)
    wanted = None if kind in (None, "all") else kind
    try:
        shown = [r for r in records(ctx, name, current) if wanted is None or r.get("kind") == wanted]
        frame = scoreboard.pivot_with_deltas(shown, kind=wanted)
        values, deltas = scoreboard.pivot(shown, kind=wanted), scoreboard.delta_vs_base(shown, kind=wanted)
        found = intervals(run, shown) if run is not None else {}
    except UNREADABLE:
        return pd.DataFrame(columns=["stage", "metric"]), None
    if frame.empty:
        return pd.DataFrame(columns=["stage", "metric"]), None
    counts = {(scoreboard.row_label(r), r["metric"], scoreboard.column_label(r)): r.get("n") for r in shown}
    styles = pd.DataFrame("", index=frame.index, columns=frame.columns)
    for i, (row, metric) in enumerate(values.index):
        for column in values.columns:
            styles.iat[i, frame.columns.get_loc(str(column))] = STYLES[
                scoreboard.improvement(metric, deltas.loc[(row, metric), column])]
            if metric in INTERVAL_METRICS:
                frame.iat[i, frame.columns.get_loc(str(column))] = _mt_cell(
                    frame.iat[i, frame.columns.get_loc(str(column))], found.get((row, metric, str(column))),
                    counts.get((row, metric, str(column))))
    frame["metric"] = frame["metric"].map(lambda m: TOKENIZER_DEPENDENT.get(m, m))
    return frame, styles


def notes(ctx: AppContext, name: str | None, kind: str = "all", current: Attempt | None = None) -> str:
    """What the table's cells mean, as the terminal's caption says it."""
    shown = [r for r in records(ctx, name, current) if kind in (None, "all") or r.get("kind") == kind]
    if not shown:
        return ""
    metrics = {r.get("metric") for r in shown}
    lines = ["value (Δ vs base): **green** = better than the base model, **red** = worse "
             "(lower is better for bits, perplexity and detector rates; higher for chrF++ and BLEU)"]
    if "token_perplexity" in metrics:
        lines.append("token_perplexity depends on the tokenizer: compare stages by bits_per_byte")
    if any(r.get("stage") == FLOOR_STAGE for r in shown):
        lines.append("floor: a character n-gram model trained on the crawl corpus, drawn as a dashed line per "
                     "language in the plot; a model above it is worse than it")
    if metrics & set(INTERVAL_METRICS):
        lines.append(f"translation metrics: 95% CI = percentile bootstrap over the sentences ({BOOTSTRAP_SAMPLES} "
                     f"resamples, seed {BOOTSTRAP_SEED}); n = sentences scored")
    ratios = scoreboard.bytes_per_char(shown)
    if "bits_per_byte" in metrics and len(ratios) > 1:
        spread = ", ".join(f"{code} {ratio:.2f}" for code, ratio in ratios.items())
        lines.append("bits_per_byte compares stages of one language, not languages: UTF-8 bytes per character "
                     f"differ ({spread}); across languages compare bits_per_char")
    lines += [escape(line) for line in scoreboard.notes(shown)]  # reasons quote messages such as "<urlopen error>"
    return "\n".join(f"- {line}" for line in lines)


# -- plots -------------------------------------------------------------------------------------------------------
def plot_lm(board: list[dict[str, Any]], metric: str = "bits_per_byte") -> Figure:
    """``metric`` per language across the model stages, each language's floor a dashed line of its colour."""
    figure = scoreboard.plot_lm([r for r in board if r.get("stage") != FLOOR_STAGE], metric=metric)
    axes = figure.axes[0]
    colours = {line.get_label(): line.get_color() for line in axes.get_lines()}
    floors = [r for r in board if r.get("stage") == FLOOR_STAGE and r.get("kind") == "lm"
              and r.get("metric") == metric and r.get("value") is not None]
    for record in floors:
        language = str(record["language"])
        axes.axhline(float(record["value"]), color=colours.get(language, "gray"), linestyle="--", linewidth=1.2,
                     label=f"{language} floor ({record.get('variant') or 'n-gram'})")
    if floors:
        axes.legend(title="language", fontsize=8)
    return figure


def plots(ctx: AppContext, name: str | None, current: Attempt | None = None) -> tuple[Figure, Figure, Figure]:
    run = ctx.run(name)
    board = (current or latest_attempt(run)).records if run is not None else []
    curves = run.curves() if run is not None else pd.DataFrame(columns=["stage", "language"])
    return plot_lm(board), plot_curves(curves), scoreboard.plot_mt(board)


def human(ctx: AppContext, name: str | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    run = ctx.run(name)
    ratings = review.load_ratings(run.root) if run is not None else []
    return review.summary(ratings).round(2), review.agreement(ratings).round(3)


def status_line(current: Attempt | None) -> str:
    if current is None:
        return "No run selected."
    return current.banner() or f"**{current.status}**: the scores of every step."


def fingerprint(ctx: AppContext, name: str | None) -> list[Any]:
    """What changes when the run's scores, manifest, events or ratings change, or its process goes away."""
    run = ctx.run(name)
    if run is None:
        return [name]
    try:
        files = sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in run.root.iterdir() if p.is_file())
        return [name, files, run.store.is_locked()]
    except OSError:
        return [name]


def build(ctx: AppContext, run_picker: gr.Dropdown) -> Refresh:
    with gr.Row(equal_height=True):
        kind = gr.Radio(list(KINDS), value="all", label="show", scale=4, elem_id="scores-kind")
        refresh = gr.Button("Refresh", scale=1, elem_id="scores-refresh")
    current = attempt(ctx, run_picker.value)
    status = gr.Markdown(status_line(current), elem_id="scores-status")
    board = gr.Dataframe(value=styled_table(ctx, run_picker.value, current=current), label="scores: value (Δ vs base)",
                         interactive=False, wrap=True, max_height=900, elem_id="scores-table")
    caption = gr.Markdown(notes(ctx, run_picker.value, current=current), elem_id="scores-notes")
    lm, curves, mt = plots(ctx, run_picker.value, current)
    with gr.Row():
        lm_plot = gr.Plot(value=lm, label="bits per byte (dashed: n-gram floor)",
                          elem_id="scores-lm-plot")
        curves_plot = gr.Plot(value=curves, label="CPT curves")
    mt_plot = gr.Plot(value=mt, label="translation metrics and detector rates")
    ratings, agreement = human(ctx, run_picker.value)
    human_table = gr.Dataframe(value=ratings, label="human ratings per system (Review tab)", interactive=False,
                               elem_id="scores-human")
    agreement_table = gr.Dataframe(value=agreement, label="agreement between reviewers (Krippendorff's alpha)",
                                   interactive=False, elem_id="scores-agreement")
    seen = gr.State(fingerprint(ctx, run_picker.value))
    timer = gr.Timer(REFRESH_SECONDS)

    def update(name: str | None, which: str) -> tuple[Any, ...]:
        now = attempt(ctx, name)
        return (status_line(now), styled_table(ctx, name, which, now), notes(ctx, name, which, now),
                *plots(ctx, name, now), *human(ctx, name), fingerprint(ctx, name))

    def tick(name: str | None, which: str, before: list[Any]) -> tuple[Any, ...]:
        """Every few seconds: everything afresh, but only when the run's files changed."""
        if fingerprint(ctx, name) == before:
            return (gr.skip(),) * len(outputs)
        return update(name, which)

    def of_kind(name: str | None, which: str) -> tuple[Any, Any]:
        now = attempt(ctx, name)
        return styled_table(ctx, name, which, now), notes(ctx, name, which, now)

    outputs = [status, board, caption, lm_plot, curves_plot, mt_plot, human_table, agreement_table, seen]
    # one queue for every event that writes the table: a later choice of kind is never overwritten by an
    # earlier refresh that finishes after it
    refresh.click(update, inputs=[run_picker, kind], outputs=outputs, concurrency_id=QUEUE)
    kind.change(of_kind, inputs=[run_picker, kind], outputs=[board, caption], concurrency_id=QUEUE)
    timer.tick(tick, inputs=[run_picker, kind, seen], outputs=outputs, show_progress="hidden", concurrency_id=QUEUE)
    return Refresh(update, [run_picker, kind], outputs, queue=QUEUE)
