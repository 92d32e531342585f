"""``workbench`` command line: run, plan, scores, models, ui."""

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
