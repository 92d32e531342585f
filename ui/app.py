"""The workbench app for linguists: runs, recipes, corpora, tokens, scores, side-by-side outputs, review.

Every tab reads the run store through the package's API (:class:`workbench.run.Run`, reviews, marks,
the launcher) on each event; the app keeps no state of its own (only loaded models, kept for the next
translation). Views stay true: each tab shows its run afresh when the page loads, when another run is
picked and when the tab is opened; the run picker, the Runs tab and the Scores tab also follow the run
store by themselves while the page is open (a timer that sends something only when it changed). Start it with
``workbench ui`` (the only way). Safety:

- it binds 127.0.0.1; another host or a share link needs credentials (``--auth-file`` or
  ``$WORKBENCH_UI_AUTH``, ``user:password``), and refuses to start without them;
- paths from the browser must stay inside the workspace folder (``ui.context.AppContext.inside``);
  only the workspace's exports and Gradio's own cache are served as files;
- uploads are limited in size (1 MB by default); recipes are parsed with ``yaml.safe_load`` and
  validated, never executed.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: no network

import ipaddress
import sys
from pathlib import Path
from typing import Any

import gradio as gr

from workbench.errors import WorkbenchError

from .context import AppContext
from .tabs import compare, corpus, export, recipe, review, runs, scores, tokenizer

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
RUNS_REFRESH_SECONDS = 5.0  # how often the run picker looks for runs added or removed
AUTH_ENV = "WORKBENCH_UI_AUTH"
TABS = (("Runs", runs), ("Recipe", recipe), ("Corpus", corpus), ("Tokenizer", tokenizer), ("Scores", scores),
        ("Compare", compare), ("Review", review), ("Export", export))


class ExposedWithoutCredentials(WorkbenchError):
    """The app would be reachable from other machines without a login."""


def build_app(ctx: AppContext) -> gr.Blocks:
    """The Blocks app over a workspace: a run picker shared by the eight tabs."""
    first = ctx.latest_run()
    with gr.Blocks(title="workbench", analytics_enabled=False) as app:
        gr.Markdown(f"# workbench\nWorkspace `{ctx.root}` · runs in `{ctx.relative(ctx.runs) or '.'}`")
        with gr.Row(equal_height=True):
            picker = gr.Dropdown(choices=ctx.run_names(), value=first, label="run", scale=4, elem_id="run-picker")
            reload = gr.Button("Reload runs", scale=1, elem_id="run-reload")
        for title, module in TABS:
            with gr.Tab(title, id=title.lower(), elem_id=f"tab-{title.lower()}") as tab:
                refresh = module.build(ctx, picker)
            if refresh is not None:  # the tab shows its run afresh on load, on another run, on opening it
                gr.on([app.load, picker.change, tab.select], refresh.fn, inputs=refresh.inputs,
                      outputs=refresh.outputs, show_progress="hidden", concurrency_id=refresh.queue)

        known = gr.State([])  # the run names this page's picker offers
        timer = gr.Timer(RUNS_REFRESH_SECONDS)

        def runs_list(selected: str | None) -> tuple[gr.Dropdown, list[str]]:
            names = ctx.run_names()
            return gr.Dropdown(choices=names, value=selected if selected in names else ctx.latest_run()), names

        def runs_list_if_changed(selected: str | None, offered: list[str]) -> tuple[Any, Any]:
            """The picker follows the run store by itself: a new run appears, a deleted one goes."""
            if ctx.run_names() == offered:
                return gr.skip(), gr.skip()
            return runs_list(selected)

        gr.on([app.load, reload.click], runs_list, inputs=picker, outputs=[picker, known], show_progress="hidden")
        timer.tick(runs_list_if_changed, inputs=[picker, known], outputs=[picker, known], show_progress="hidden")
    return app


def credentials(auth_file: Path | None = None) -> list[tuple[str, str]]:
    """``user:password`` pairs from ``auth_file`` (one per line) or ``$WORKBENCH_UI_AUTH``."""
    lines = auth_file.read_text(encoding="utf-8").splitlines() if auth_file else [os.environ.get(AUTH_ENV, "")]
    pairs = []
    for line in lines:
        user, sep, password = line.strip().partition(":")
        if sep and user and password:
            pairs.append((user, password))
    return pairs


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def launch(root: Path, runs: Path | None = None, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
           share: bool = False, auth_file: Path | None = None, max_upload_mb: float = 1.0) -> None:
    """Serve the app (blocks). Exposing it beyond this machine requires credentials."""
    login = credentials(auth_file)
    if (share or not _loopback(host)) and not login:
        raise ExposedWithoutCredentials(
            f"serving on {host if not share else 'a public share link'} needs credentials: pass --auth-file FILE "
            f"(lines user:password) or set {AUTH_ENV}=user:password")
    owner = login[0][0] if login else None  # with logins, the first user owns the runs (unblinds ratings)
    ctx = AppContext.create(root, runs, max_upload_bytes=int(max_upload_mb * 1_000_000), owner=owner)
    ctx.exports_dir.mkdir(parents=True, exist_ok=True)
    build_app(ctx).launch(
        server_name=host, server_port=port, share=share, auth=login or None, ssr_mode=False, show_error=True,
        max_file_size=ctx.max_upload_bytes, allowed_paths=[str(ctx.exports_dir)],
        blocked_paths=[str(p) for p in (ctx.root / ".workbench",) if p.exists()], head=review.SHORTCUTS)


if __name__ == "__main__":  # one way to start the app: the CLI
    sys.exit("Start the app with `workbench ui` (see `workbench ui --help`).")


__all__ = ["build_app", "credentials", "launch"]
