"""``workbench`` command line: run, plan, scores, compare, eval, transplant, lid-*, cc-select, cc-fetch, models, ui."""

# Imports that pull in torch, transformers, pandas, matplotlib, gradio or the crawl's compiled libraries (the
# engine, scoreboard, tasks, models, compare, publish, the memory plan, language ID, the crawl pipeline, the app)
# are made inside the commands that need them, so that `workbench --help` and the light commands start fast and
# work without the crawl's libraries; everything else is imported here.

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from .crawl.ccindex import fetch_records, read_selection, select_records, write_selection
from .errors import GateError, ModelSourceError, WorkbenchError, disk_full
from .io import atomic_write_json
from .languages import check_code
from .optional import missing_dependency
from .recipe import eval_config_from_options, load_recipe
from .store import DEFAULT_WORKSPACE, RunStore, open_run

workspace_option = click.option(
    "--workspace", type=click.Path(path_type=Path), default=DEFAULT_WORKSPACE, show_default=True,
    help="Directory holding the runs.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]},
             epilog="Exit status: 0 success; 2 a user's mistake (recipe, data, model source, unknown run or "
                    "workspace), named in one message; 3 a quality gate stopped the run; 1 an internal failure "
                    "(a bug: please report it with its traceback); 130 interrupted.")
@click.version_option(package_name="workbench")
def cli() -> None:
    """Adapt a pretrained language model to a low-resource language, scoring every stage."""


@cli.command()
@click.argument("recipe", type=click.Path(path_type=Path))
@workspace_option
@click.option("--device", default=None, help="cuda, mps or cpu (default: the best available).")
@click.option("--progress/--no-progress", default=True, help="Progress bars on long work.")
@click.option("--executor", type=click.Choice(["serial", "local", "ray"]), default=None,
              help="Where the crawl's shards run (default: the recipe's choice, local processes).")
def run(recipe: Path, workspace: Path, device: str | None, progress: bool, executor: str | None) -> None:
    """Run RECIPE: every stage not already cached, then print the scoreboard."""
    from .engine import run_recipe
    from .scoreboard import print_scoreboard

    loaded = load_recipe(recipe)
    console = Console()
    result = run_recipe(loaded, workspace, device=device, progress=progress, executor=executor,
                        echo=lambda line: console.print(line, markup=False, highlight=False))
    ran = sum(1 for s in result.steps if s["status"] == "ran")
    cached = sum(1 for s in result.steps if s["status"] == "cached")
    console.print(f"\n{loaded.name}: {ran} step(s) ran, {cached} reused from cache; run store: {result.store.root}",
                  markup=False, highlight=False, soft_wrap=True)
    print_scoreboard(result.scoreboard, console)


@cli.command()
@click.argument("recipe", type=click.Path(path_type=Path))
@workspace_option
@click.option("--gpu-memory", type=float, default=24.0, show_default=True, help="GPU memory (GiB) to plan for.")
@click.option("--memory/--no-memory", default=True, show_default=True,
              help="Estimate each training run's peak memory from the model's config (no weights).")
def plan(recipe: Path, workspace: Path, gpu_memory: float, memory: bool) -> None:
    """Show which steps of RECIPE are cached and which would run, and whether each training run fits
    in --gpu-memory (runs nothing, downloads no weights)."""
    from .engine import check_base_model, preflight
    from .engine import plan as make_plan

    loaded = load_recipe(recipe)
    warnings = preflight(loaded, check_model=False)  # the data, checked now rather than hours into the run
    try:
        check_base_model(loaded)
    except ModelSourceError as err:  # the memory plan needs only the model's config (shipped for common bases)
        if not (memory and _config_available(loaded.base.model)):
            raise
        warnings.append(f"{err}\n(a run would stop here; the memory plan goes on with the model's config alone)")
    table = Table(title=f"plan: {loaded.name} (workspace {workspace})")
    for column in ("step", "kind", "artifact key", "status"):
        table.add_column(column)
    colours = {"cached": "green", "run": "yellow", "resume": "cyan", "base": "dim"}
    for step, status in make_plan(loaded, RunStore(workspace, loaded.name)):
        table.add_row(step.id, step.kind, step.key[:16], f"[{colours[status]}]{status}[/]")
    console = Console()
    if not console.is_terminal and console.width < 200:
        console.width = 200  # the memory plan's columns
    console.print(table)
    for warning in warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    if memory:
        _print_memory_plan(loaded, gpu_memory, console)


def _config_available(source: str) -> bool:
    """Whether the memory plan can read ``source``'s config although the model itself is unavailable."""
    from .train.memory import load_config

    try:
        load_config(source)
    except (ModelSourceError, OSError, ValueError):
        return False
    return True


def _print_memory_plan(recipe: Any, gpu_memory: float, console: Any) -> None:
    """One row per training run: every term of the estimate, the allocator peak, the CUDA context and the
    device total that must fit in ``gpu_memory``."""
    from .train.memory import PART_LABELS, estimate, load_config, model_shape, recipe_setups

    setups = recipe_setups(recipe)
    if not setups:
        return
    config, origin = load_config(recipe.base.model)
    shape = model_shape(config)
    estimates = [(name, setup, estimate(shape, setup)) for name, setup in setups]
    always = ("weights", "adapter", "gradients", "optimizer", "activations", "logits")
    terms = [k for k in PART_LABELS if k in always or any(k in e.parts for _, _, e in estimates)]
    table = Table(title=f"will it fit in {gpu_memory:g} GiB? {recipe.base.model} ({shape.params / 1e9:.2f}B "
                        f"parameters; config: {origin}); GiB")
    columns = ("training run", "method", "r", "4-bit", "batch×len×accum", "ckpt",
               *(PART_LABELS[k] for k in terms), "− overlap", "allocator peak", "CUDA context", "device total", "fits")
    for column in columns:
        table.add_column(column, justify="left" if column in ("training run", "method") else "right",
                         no_wrap=column in ("training run", "batch×len×accum"))
    for name, setup, est in estimates:
        parts = est.gib()
        fits = est.fits(gpu_memory)
        table.add_row(name, setup.method, str(setup.r) if setup.adapter else "",
                      "yes" if setup.quantize == "4bit" else "",
                      f"{setup.batch_size}×{setup.seq_len}×{setup.grad_accum}",
                      "yes" if setup.gradient_checkpointing else "",
                      *(f"{parts[k]:.2f}" if k in parts else "" for k in terms),
                      f"{-parts['overlap']:.2f}" if parts["overlap"] else "", f"{parts['allocator']:.2f}",
                      f"{parts['context']:.2f}", f"{parts['total']:.2f}", "[green]yes[/]" if fits else "[red]no[/]")
    console.print(table)
    console.print(
        "estimates for a CUDA GPU with this package's training loop (fused loss; AdamW; adapters in fp32; full "
        "training in fp32 weights, under bf16 autocast when the recipe's dtype is bfloat16). allocator peak: the "
        "terms' sum less the overlap (with one micro-batch per step the backward pass frees activations as it fills "
        "gradients, so only the larger counts; with accumulation both are resident), what "
        "torch.cuda.max_memory_allocated reports; device total: that and the CUDA context, what the GPU must hold. "
        "fp32 upcast: QLoRA's float32 embeddings and norms; ema: the EMA's fp32 copy of the trained weights; bf16 "
        "cache: autocast's bf16 copies of the weights, kept for the backward pass", soft_wrap=False)


@cli.command()
@click.argument("run_name", metavar="RUN")
@workspace_option
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
def scores(run_name: str, workspace: Path, fmt: str) -> None:
    """Print the scoreboard of RUN (a run name in the workspace, or a run directory)."""
    from .scoreboard import print_scoreboard, to_csv, to_json

    store = open_run(run_name, workspace)
    records = store.scoreboard()
    status = store.status()
    if status != "finished":
        scored = sorted({str(r["stage"]) + (f"/{r['variant']}" if r.get("variant") else "") for r in records})
        click.echo(f"note: run '{store.name}' is {status}; scores of the steps that finished: "
                   f"{', '.join(scored) or 'none'}", err=True)
    if fmt == "csv":
        click.echo(to_csv(records), nl=False)
    elif fmt == "json":
        click.echo(to_json(records))
    else:
        print_scoreboard(records, Console())


@cli.command()
@click.argument("run_name", metavar="RUN")
@workspace_option
@click.option("--stage", default=None, help="Stage whose variants to compare (default: the last with variants).")
@click.option("--baseline", default=None, help="Variant to test the others against (default: the model they "
              "started from).")
@click.option("--samples", type=int, default=1000, show_default=True, help="Paired bootstrap resamples.")
@click.option("--plot", type=click.Path(path_type=Path), default=None,
              help="Pareto plot PNG (default: <run>/compare-<stage>.png).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def compare(run_name: str, workspace: Path, stage: str | None, baseline: str | None, samples: int,
            plot: Path | None, fmt: str) -> None:
    """Compare the adapter variants of RUN: translation metrics with paired bootstrap significance
    against a baseline, failure-detector rates, LM retention, cost; and a Pareto plot."""
    from .compare import compare_run, pareto_plot
    from .scoreboard import print_comparison

    store = open_run(run_name, workspace)
    comparison = compare_run(store, stage=stage, baseline=baseline, n_samples=samples)
    path = pareto_plot(comparison, plot or store.root / f"compare-{comparison.stage}.png")
    if fmt == "json":
        record = {k: v for k, v in dataclasses.asdict(comparison).items() if k != "translations"}
        click.echo(json.dumps(record, indent=1, default=str))
        return
    print_comparison(comparison, Console())
    click.echo(f"Pareto plot: {path}")


@cli.command()
@click.option("--adapter", "adapter", required=True, type=click.Path(path_type=Path, exists=True, file_okay=False),
              help="A peft adapter directory, e.g. adapters/<run>/<variant>.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Standalone model directory to write.")
@click.option("--base", default=None, help="Base model (default: the one recorded in the adapter's metadata.json).")
@click.option("--device", default=None, help="cuda, mps or cpu (default: the best available).")
def merge(adapter: Path, out: Path, base: str | None, device: str | None) -> None:
    """Merge an adapter into its base model: a plain directory AutoModelForCausalLM loads."""
    from .publish import merge_adapter

    click.echo(f"merged into {merge_adapter(adapter, out, base=base, device=device)}")


def _codes(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


EVAL_FLAGS = {"lm.sets": "--lm-sets", "lm.languages": "--languages", "mt.sets": "--mt-sets",
              "mt.directions": "--directions", "mt.lid_seed": "--lid-seed", "mt.shots": "--shots",
              "lm.max_sentences": "--max-sentences", "mt.max_sentences": "--max-sentences"}
"""``workbench eval``'s flag for each evaluation setting, so that a problem names the flag."""


@cli.command("eval")
@click.option("--model", "source", required=True, help="Model source: hf:<repo>, a local directory, gguf:<file>, "
              "smollm2-135m, gemma3-270m.")
@click.option("--adapter", type=click.Path(path_type=Path, exists=True, file_okay=False), default=None,
              help="A peft adapter directory to apply (merged) on top of the model.")
@click.option("--lm-sets", default=None, help="LM set: FLORES folder, parallel folder, .tsv, .jsonl or hf:id.")
@click.option("--mt-sets", default=None, help="MT evaluation set (same kinds as --lm-sets).")
@click.option("--languages", default=None, help="Comma-separated codes for LM scores, e.g. srd_Latn,eng_Latn.")
@click.option("--directions", default=None, help="Comma-separated directions, e.g. eng_Latn-srd_Latn.")
@click.option("--split", default="dev", show_default=True, help="Split of FLORES-layout and hub sets.")
@click.option("--max-sentences", type=int, default=None, help="Sentences per language/direction (default 200/100).")
@click.option("--shots", type=int, default=1, show_default=True, help="Few-shot exemplars (never scored).")
@click.option("--prompt", type=click.Choice(["auto", "plain", "chat"]), default="auto", show_default=True)
@click.option("--lid-seed", default=None, help="Folder of <code>.txt seed texts: enables the off-target detector.")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Scoreboard records (JSON); per-sentence files go to <out stem>-sentences/.")
@click.option("--device", default=None, help="cuda, mps or cpu (default: the best available).")
@click.option("--progress/--no-progress", default=True)
def evaluate(source: str, adapter: Path | None, lm_sets: str | None, mt_sets: str | None, languages: str | None,
             directions: str | None, split: str, max_sentences: int | None, shots: int, prompt: str,
             lid_seed: str | None, out: Path, device: str | None, progress: bool) -> None:
    """Score any model (and adapter) on LM and MT sets, outside recipes, in the scoreboard schema."""
    from .scoreboard import print_scoreboard
    from .tasks import load_and_score

    cfg = eval_config_from_options(lm_sets=lm_sets, mt_sets=mt_sets, languages=_codes(languages),
                                   directions=_codes(directions), split=split, max_sentences=max_sentences,
                                   shots=shots, prompt=prompt, lid_seed=lid_seed, names=EVAL_FLAGS,
                                   source="workbench eval")
    sentences = out.parent / f"{out.stem}-sentences"
    records = load_and_score(source, cfg, sentences, adapter=adapter, stage="eval",
                             variant=adapter.name if adapter else None, device=device, progress=progress)
    for record in records:
        record["model"] = source
    atomic_write_json(out, records)
    console = Console()
    print_scoreboard(records, console)
    console.print(f"{len(records)} records written to {out}; per-sentence results in {sentences}/",
                  markup=False, highlight=False, soft_wrap=True)


TRANSPLANT_FIELDS = {"mode": "mode", "vocab_size": "vocab_size", "max_new_tokens": "max_new_tokens", "init": "init",
                     "neighbours": "neighbours", "mix": "mix", "shrink": "shrink", "fresh": "fresh",
                     "min_frequency": "min_frequency", "keep_words": "keep_words", "trim_rows": "trim_rows",
                     "drop_reserved": "drop_reserved", "pad_to_multiple_of": "pad_to_multiple_of",
                     "max_regression": "gate.max_regression", "gate_action": "gate.action"}
"""``workbench transplant``'s flags that set a field of the tokenizer stage's config (parameter -> field)."""


def _language_files(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, list[Path]]:
    """``CODE=PATH`` values as ``{code: [paths]}``, each code a valid language code and each path a file."""
    files: dict[str, list[Path]] = {}
    for value in values:
        code, sep, path = value.partition("=")
        try:
            check_code(code.strip())
        except ValueError as err:
            raise click.BadParameter(f"{value!r}: {err}" if sep else f"{value!r} is not CODE=PATH") from None
        if not Path(path).is_file():
            raise click.BadParameter(f"{value!r}: no file {path}")
        files.setdefault(code.strip(), []).append(Path(path))
    return files


@cli.command(epilog="Settings: every key of a recipe's tokenizer stage (README: 'Tokenizer transplant outside "
             "recipes') can be set, with the same defaults and checks: a flag above for the common ones, --config for "
             "a file of them, "
             "--set KEY=VALUE for any (dotted for the gate: --set gate.languages=[eng_Latn]). Later layers win: "
             "the defaults, then --config, then the flags, then --set. The resolved settings are written to "
             "transplant.json under 'config'. The same settings and corpora give the model a recipe's tokenizer "
             "stage gives (--seed is the recipe's seed:).")
@click.option("--model", "source", required=True, help="Base model: hf:<repo>, a local directory, gguf:<file>, "
              "smollm2-135m, gemma3-270m.")
@click.option("--corpus", "corpus", multiple=True, required=True, type=click.Path(path_type=Path, exists=True),
              help="Target-language text (.txt: one text per line; .jsonl: a 'text' field). Repeatable.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output model directory.")
@click.option("--config", "config_file", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="YAML file of tokenizer stage settings (the keys of a recipe's 'tokenizer:' stage).")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="Any tokenizer stage setting, value in YAML: protect=[eng_Latn], join_marks=false, "
                   "gate.max_regression=0.1. Repeatable; wins over --config and the flags.")
@click.option("--mode", type=click.Choice(["extend", "replace", "trim"]),
              help="extend: base + reachable new pieces; replace: a new vocabulary only; trim: the base entries the "
                   "corpora use (default: extend).")
@click.option("--vocab-size", type=int, help="replace: size of the new vocabulary; extend: pieces added when "
              "--max-new-tokens is not given (default: 8000).")
@click.option("--max-new-tokens", type=int, help="extend: pieces added.")
@click.option("--init", "init", type=click.Choice(["subtoken", "hybrid", "mean", "focus", "random"]),
              help="Initialization of the new rows (default: subtoken).")
@click.option("--neighbours", type=int, help="hybrid: nearest base rows mixed in (default: 8).")
@click.option("--mix", type=float, help="hybrid: weight of the neighbours against the decomposition (default: 0.3).")
@click.option("--shrink", type=float, help="Pull of new rows towards the mean row (default: 0.1).")
@click.option("--fresh", is_flag=True, help="replace: train the vocabulary from characters instead of growing it "
              "from the base pieces the corpus uses.")
@click.option("--min-frequency", type=int, help="Least count of a new piece's pair (default: 2).")
@click.option("--keep-words", type=int, help="trim: also keep the pieces of the N most frequent words of the target, "
              "each of --languages and English (wordfreq lists; pip install 'workbench[wordlists]').")
@click.option("--trim-rows", type=float, help="trim: row budget, a share of the base's rows (<= 1) or a count, filled "
              "with the pieces the word lists of the target, --languages and English use most (frequency-weighted; "
              "the 'wordlists' extra). The corpora's own pieces always stay.")
@click.option("--drop-reserved", is_flag=True, help="trim/replace: also drop the base's reserved placeholder tokens "
              "(Gemma's 6,242 <unusedN>, Llama-3 <|reserved_special_token_N|>) unless the chat template uses one.")
@click.option("--pad-to-multiple-of", type=int, help="Pad the embedding rows, e.g. 64.")
@click.option("--target", default=None, help="The language of --corpus (a recipe's target; or --set language=...).")
@click.option("--languages", default=None, help="Comma-separated codes of the run's languages, e.g. srd_Latn,eng_Latn: "
              "--eval-sets scores them all; the ones besides --target act as a recipe's replay languages (their "
              "word lists, the gate's checks).")
@click.option("--replay", multiple=True, metavar="CODE=PATH", callback=_language_files,
              help="A replay language's text (.txt or .jsonl), as a recipe's crawl gives it: trim and replace keep its "
                   "pieces, extend protects its segmentation (the 'protect' setting; by default every replay "
                   "language whose protection leaves the target new pieces). Repeatable.")
@click.option("--protect", multiple=True, type=click.Path(path_type=Path, exists=True),
              help="extend: more text whose segmentation must not change. Repeatable.")
@click.option("--keep", multiple=True, type=click.Path(path_type=Path, exists=True),
              help="trim/replace: more text whose pieces are kept besides --corpus. Repeatable.")
@click.option("--eval-sets", default=None, help="Held-out LM set of --languages for fertility and the gate (FLORES "
              "folder, .tsv, .jsonl, hf:id).")
@click.option("--max-sentences", type=int, default=100, show_default=True, help="Gate sentences per language.")
@click.option("--max-regression", type=float,
              help="Allowed relative rise of bits per byte on checked languages (default: 0.05).")
@click.option("--gate", "gate_action", type=click.Choice(["fail", "warn"]),
              help="When the gate trips: exit with status 3, or only warn (default: fail).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of random row initialization.")
@click.option("--progress/--no-progress", default=True)
@click.pass_context
def transplant(ctx: click.Context, source: str, corpus: tuple[Path, ...], out: Path, config_file: Path | None,
               settings: tuple[str, ...], target: str | None, languages: str | None, replay: dict[str, list[Path]],
               protect: tuple[Path, ...], keep: tuple[Path, ...], eval_sets: str | None, max_sentences: int,
               seed: int, progress: bool, **flags: Any) -> None:
    """Give a model a target-language vocabulary, as a recipe's tokenizer stage does; write a plain Hugging Face
    directory and transplant.json (rows kept and initialized, fertility, the gate)."""
    from .tasks import tokenizer_config, transplant_files

    given = {TRANSPLANT_FIELDS[name]: value for name, value in flags.items()
             if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE}
    config = tokenizer_config(config_file, given, settings, source="workbench transplant")
    codes = _codes(languages)
    if config.uses_word_lists() and not (target or config.language or codes or replay):
        flag = "--keep-words" if config.keep_words else "--trim-rows"
        raise click.UsageError(f"{flag} needs the languages whose word lists are kept: --target and/or --languages "
                               "(English's are kept besides)")
    lm = eval_config_from_options(lm_sets=eval_sets, mt_sets=None, languages=codes, directions=[], split="dev",
                                  max_sentences=max_sentences, shots=0, prompt="auto", lid_seed=None,
                                  names={"lm.sets": "--eval-sets", "lm.languages": "--languages",
                                         "lm.max_sentences": "--max-sentences"},
                                  source="workbench transplant").lm if eval_sets else None
    console = Console()
    report = transplant_files(source, list(corpus), out, config, target=target, languages=codes, replay=replay,
                              protect=list(protect), keep=list(keep), lm=lm, seed=seed, progress=progress,
                              echo=lambda line: console.print(line, markup=False, highlight=False))
    failures = report.get("gate", {}).get("failures", [])
    if failures and config.gate.action == "fail":
        raise GateError("the transplant failed its gate: " + "; ".join(failures)
                        + f" (model written to {out}; use --gate warn to accept)")


@cli.command("lid-train")
@click.option("--sets", "sets_dir", required=True, type=click.Path(path_type=Path),
              help="Labelled text: a FLORES-layout folder or one <code>.txt file per language.")
@click.option("--languages", default=None, help="Comma-separated codes to train on (default: every file).")
@click.option("--split", default="dev", show_default=True, help="Split of a FLORES-layout folder.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder to write the identifier into.")
@click.option("--fasttext/--no-fasttext", "use_fasttext", default=True, show_default=True,
              help="Back the trained model with the offline fastText lid.176 for languages outside the set "
                   "(--no-fasttext is --general-lid none).")
@click.option("--general-lid", default=None,
              help="The general identifier, as the crawl's general_lid: fasttext, none, or a fastText model file "
                   "(GlotLID, OpenLID). Default: fasttext.")
def lid_train(sets_dir: Path, languages: str | None, split: str, out: Path, use_fasttext: bool,
              general_lid: str | None) -> None:
    """Train a language identifier that knows the languages of SETS (the target and its neighbours)."""
    from .crawl.lid_eval import read_labelled, train_from_texts

    texts = read_labelled(sets_dir, _codes(languages) or None, split)
    started = time.time()
    identifier = train_from_texts(texts, use_fasttext=use_fasttext, general_lid=general_lid)
    identifier.save(out)
    lines = sum(map(len, texts.values()))
    click.echo(f"trained on {lines} lines of {len(texts)} languages in {time.time() - started:.1f}s -> {out}")
    confused = sorted(identifier.confusable - set(identifier.seed_languages))
    click.echo(f"general identifier: {identifier.describe()}; labels it gives seed lines (the seed model decides "
               f"those): {', '.join(confused) or 'seed languages only'}")
    missing = identifier.confusion.missing_neighbours() if identifier.confusion is not None else {}
    for code, labels in missing.items():
        click.echo(f"warning: the general identifier calls many {code} lines {', '.join(labels)}, which have no "
                   f"seed text: their text may be labelled {code}; add seed text for them", err=True)


@cli.command("lid-eval")
@click.option("--model", "model_path", required=True, help="A folder written by lid-train, or 'fasttext'.")
@click.option("--sets", "sets_dir", required=True, type=click.Path(path_type=Path),
              help="Labelled text: a FLORES-layout folder or one <code>.txt file per language.")
@click.option("--languages", default=None, help="Comma-separated codes to evaluate (default: every file).")
@click.option("--split", default="dev", show_default=True)
@click.option("--min-score", type=float, default=None,
              help="Below this top score a line counts as rejected ('und'). Default: the crawl stage's "
                   "min_score (0.5), so the report shows what a crawl keeps. 0 never rejects.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Write the report as JSON.")
def lid_eval(model_path: str, sets_dir: Path, languages: str | None, split: str, min_score: float | None,
             out: Path | None) -> None:
    """Per-language precision, recall and F1 of a language identifier on labelled SETS, and its confusions."""
    from .crawl.lid_eval import evaluate_identifier, load_identifier_model, read_labelled
    from .crawl.pipeline import MIN_SCORE

    min_score = MIN_SCORE if min_score is None else min_score

    report = evaluate_identifier(load_identifier_model(model_path), read_labelled(sets_dir, _codes(languages) or None,
                                                                                 split), min_score=min_score)
    table = Table(title=f"language identification: {model_path} on {sets_dir} (accuracy {report['accuracy']:.3f})")
    for column in ("language", "lines", "precision", "recall", "F1", "rejected"):
        table.add_column(column, justify="left" if column == "language" else "right")
    for code, row in report["languages"].items():
        table.add_row(code, str(row["n"]), f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1']:.3f}",
                      str(row["rejected"]))
    console = Console()
    console.print(table)
    if report["confusions"]:
        pairs = ", ".join(f"{c['gold']}->{c['predicted']} {c['count']}" for c in report["confusions"][:10])
        console.print(f"most frequent confusions: {pairs}", markup=False, highlight=False, soft_wrap=True)
    if out is not None:
        atomic_write_json(out, report)
        console.print(f"report written to {out}", markup=False, highlight=False)


@cli.command("cc-select")
@click.option("--index", "index", required=True, multiple=True,
              help="Common Crawl columnar index parquet files or globs (local, s3:// or https://).")
@click.option("--candidates", default="", help="Index languages to consider, e.g. ita,spa,cat (ISO 639-3).")
@click.option("--unknown/--no-unknown", default=True, show_default=True, help="Also records without a language.")
@click.option("--tld", "tlds", default="", help="Comma-separated top-level domains, e.g. it.")
@click.option("--url-pattern", default=None, help="Regular expression on the URL, e.g. 'sardu|sardegna'.")
@click.option("--limit", type=int, default=None)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Selection (JSONL) to fetch.")
def cc_select(index: tuple[str, ...], candidates: str, unknown: bool, tlds: str, url_pattern: str | None,
              limit: int | None, out: Path) -> None:
    """Select the Common Crawl records that may hold the target language (recall-oriented)."""
    rows = select_records(list(index), candidates=_codes(candidates), unknown=unknown, tlds=_codes(tlds),
                          url_pattern=url_pattern, limit=limit)
    count = write_selection(rows, out)
    click.echo(f"{count} records selected -> {out} (fetch them with: workbench cc-fetch --selection {out})")


@cli.command("cc-fetch")
@click.option("--selection", type=click.Path(path_type=Path, exists=True, dir_okay=False), required=True)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="The .warc.gz to write.")
@click.option("--base", default="https://data.commoncrawl.org/", show_default=True,
              help="Where the WARC files are: the Common Crawl server, another mirror, or a local folder.")
def cc_fetch(selection: Path, out: Path, base: str) -> None:
    """Fetch the byte ranges of a selection into one .warc.gz the crawl stage reads."""
    report = fetch_records(read_selection(selection), out, base=base, progress=True)
    click.echo(f"{report['fetched']} records fetched, {report['failed']} failed -> {out}")


@cli.command()
def models() -> None:
    """List the model sources the workbench knows and what is cached locally."""
    from .models import list_sources

    table = Table(title="model sources  (also: hf:<repo id>, a local directory, gguf:<file>)")
    for column in ("name", "kind", "installed", "cached", "path / how to install"):
        table.add_column(column)
    for source in list_sources():
        where = source.get("path") or source.get("install") or ""
        table.add_row(source["name"], source["kind"], _yes(source.get("installed")), _yes(source.get("cached")),
                      str(where))
    Console().print(table)


@cli.command()
@workspace_option
@click.option("--root", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="The project folder the app may read and write (its sandbox): recipes/, adapters/, exports/; "
                   "the run store (--workspace) must be inside it. Default: the current directory, or the run "
                   "store's parent folder when the run store is outside the current directory.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Another host than loopback needs credentials (--auth-file or $WORKBENCH_UI_AUTH).")
@click.option("--port", default=7860, show_default=True, type=int)
@click.option("--share", is_flag=True, help="A public Gradio share link (needs credentials).")
@click.option("--auth-file", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              help="Credentials, one user:password per line; the first user owns the runs (unblinds ratings).")
@click.option("--max-upload-mb", type=float, default=1.0, show_default=True)
def ui(workspace: Path, root: Path | None, host: str, port: int, share: bool, auth_file: Path | None,
       max_upload_mb: float) -> None:
    """Start the Gradio app: runs, recipes, corpus, tokenizer, scores, compare, review, export.

    --workspace is the run store, as for every other command; --root is the project folder around it.
    """
    from workbench_ui.app import launch

    launch(root or default_project_folder(workspace), workspace, host=host, port=port, share=share,
           auth_file=auth_file, max_upload_mb=max_upload_mb)


def default_project_folder(workspace: Path) -> Path:
    """The app's sandbox when --root is not given: the current directory if the run store is inside it, else the
    folder holding the run store (the run store itself is never the sandbox: recipes/ and exports/ sit beside
    it)."""
    here, runs = Path.cwd().resolve(), Path(workspace).resolve()
    return here if runs == here or here in runs.parents else runs.parent


def _yes(flag: object) -> str:
    return "yes" if flag else ("-" if flag is None else "no")


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors print one message (no traceback) and exit non-zero."""
    try:
        code = cli.main(args=argv, prog_name="workbench", standalone_mode=False)
    except WorkbenchError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(err.exit_code)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except ImportError as err:  # an optional dependency a command needs (the crawl's fastwarc, say): name the extra
        missing = missing_dependency("this command", err)
        if missing is None:
            raise
        click.echo(f"error: {missing}", err=True)
        sys.exit(missing.exit_code)
    except OSError as err:
        full = disk_full(err)
        if full is None:
            raise
        click.echo(f"error: {full}", err=True)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
