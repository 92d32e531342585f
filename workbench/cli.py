"""``workbench`` command line: run, plan, scores, eval, models, ui."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .errors import WorkbenchError
from .store import DEFAULT_WORKSPACE

workspace_option = click.option(
    "--workspace", type=click.Path(path_type=Path), default=DEFAULT_WORKSPACE, show_default=True,
    help="Directory holding the runs.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="workbench")
def cli() -> None:
    """Adapt a pretrained language model to a low-resource language, scoring every stage."""


@cli.command()
@click.argument("recipe", type=click.Path(path_type=Path))
@workspace_option
@click.option("--device", default=None, help="cuda, mps or cpu (default: the best available).")
@click.option("--progress/--no-progress", default=True, help="Progress bars on long work.")
def run(recipe: Path, workspace: Path, device: str | None, progress: bool) -> None:
    """Run RECIPE: every stage not already cached, then print the scoreboard."""
    from rich.console import Console

    from .engine import run_recipe
    from .recipe import load_recipe
    from .scoreboard import print_scoreboard

    loaded = load_recipe(recipe)
    console = Console()
    result = run_recipe(loaded, workspace, device=device, progress=progress,
                        echo=lambda line: console.print(line, markup=False, highlight=False))
    ran = sum(1 for s in result.steps if s["status"] == "ran")
    cached = sum(1 for s in result.steps if s["status"] == "cached")
    console.print(f"\n{loaded.name}: {ran} step(s) ran, {cached} reused from cache; run store: {result.store.root}",
                  markup=False, highlight=False, soft_wrap=True)
    print_scoreboard(result.scoreboard, console)


@cli.command()
@click.argument("recipe", type=click.Path(path_type=Path))
@workspace_option
def plan(recipe: Path, workspace: Path) -> None:
    """Show which steps of RECIPE are cached and which would run (runs nothing)."""
    from rich.console import Console
    from rich.table import Table

    from .engine import plan as make_plan
    from .recipe import load_recipe
    from .store import RunStore

    loaded = load_recipe(recipe)
    table = Table(title=f"plan: {loaded.name} (workspace {workspace})")
    for column in ("step", "kind", "artifact key", "status"):
        table.add_column(column)
    colours = {"cached": "green", "run": "yellow", "resume": "cyan", "base": "dim"}
    for step, status in make_plan(loaded, RunStore(workspace, loaded.name)):
        table.add_row(step.id, step.kind, step.key[:16], f"[{colours[status]}]{status}[/]")
    Console().print(table)


@cli.command()
@click.argument("run_name", metavar="RUN")
@workspace_option
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
def scores(run_name: str, workspace: Path, fmt: str) -> None:
    """Print the scoreboard of RUN (a run name in the workspace, or a run directory)."""
    from rich.console import Console

    from .scoreboard import print_scoreboard, to_csv, to_json
    from .store import open_run

    records = open_run(run_name, workspace).scoreboard()
    if fmt == "csv":
        click.echo(to_csv(records), nl=False)
    elif fmt == "json":
        click.echo(to_json(records))
    else:
        print_scoreboard(records, Console())


def _codes(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


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
    from rich.console import Console

    from .evaluate.scorer import score_model
    from .io import atomic_write_json
    from .modeling import load_for_eval
    from .models import pick_device, resolve_model
    from .recipe import eval_config_from_options
    from .scoreboard import print_scoreboard
    from .stages.base import ModelRef

    cfg = eval_config_from_options(lm_sets=lm_sets, mt_sets=mt_sets, languages=_codes(languages),
                                   directions=_codes(directions), split=split, max_sentences=max_sentences,
                                   shots=shots, prompt=prompt, lid_seed=lid_seed)
    device = pick_device(device)
    resolved = resolve_model(source)
    model, tokenizer = load_for_eval(ModelRef(resolved.path, adapter), device=device)
    sentences = out.parent / f"{out.stem}-sentences"
    records = score_model(model, tokenizer, cfg, stage="eval", variant=adapter.name if adapter else None,
                          out_dir=sentences, progress=progress)
    for record in records:
        record["model"] = source
    atomic_write_json(out, records)
    console = Console()
    print_scoreboard(records, console)
    console.print(f"{len(records)} records written to {out}; per-sentence results in {sentences}/",
                  markup=False, highlight=False, soft_wrap=True)


@cli.command()
def models() -> None:
    """List the model sources the workbench knows and what is cached locally."""
    from rich.console import Console
    from rich.table import Table

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
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=7860, show_default=True, type=int)
def ui(workspace: Path, host: str, port: int) -> None:
    """Start the Gradio app on the runs of a workspace."""
    from workbench_ui.app import launch

    launch(workspace, host=host, port=port)


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
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
