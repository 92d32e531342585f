"""Recipe: edit a recipe with its validation shown inline before anything runs; save it atomically.

The text is parsed with ``yaml.safe_load`` and validated by the same pydantic models as ``workbench
run``: nothing in it is executed. Files are read and written only inside the workspace.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from workbench.errors import RecipeError, WorkbenchError
from workbench.io import atomic_write_text
from workbench.recipe import recipe_from_text

from ..context import AppContext, Refresh


def validate(ctx: AppContext, name: str | None, text: str) -> tuple[bool, str]:
    """(valid, message): the problems one per line with their field paths, or what the recipe will run."""
    try:
        path = ctx.recipe_path(name or "recipes/new.yaml")
        recipe = recipe_from_text(text or "", path)
    except RecipeError as error:
        lines = str(error).splitlines()
        return False, "**Invalid recipe.**\n\n" + "\n".join(f"- `{line.strip()}`" for line in lines[1:] or lines)
    except WorkbenchError as error:
        return False, f"**Refused.** {error}"
    stages = ", ".join(f"`{spec.id}`" for spec in recipe.stages) or "none"
    return True, (f"**Valid.** `{recipe.name}`: base `{recipe.base.model}`, target `{recipe.languages.target}`, "
                  f"stages {stages}.")


def open_recipe(ctx: AppContext, name: str | None) -> tuple[str, str]:
    """(text, message) of a recipe file of the workspace."""
    if not name:
        return "", "Pick a recipe, or type a new file name and paste a recipe."
    try:
        path = ctx.recipe_path(name)
        if not path.is_file():
            return "", f"`{name}` does not exist yet: write the recipe and Save creates it."
        text = path.read_text(encoding="utf-8")
    except (WorkbenchError, OSError, UnicodeDecodeError) as error:
        return "", f"**Refused.** {error}"
    return text, validate(ctx, name, text)[1]


def save(ctx: AppContext, name: str | None, text: str) -> str:
    """Write the recipe if it is valid (atomically); an invalid one is not saved."""
    if not (name or "").strip():
        return "Not saved: give the recipe a file name (e.g. `recipes/new.yaml`)."
    valid, message = validate(ctx, name, text)
    if not valid:
        return message + "\n\nNot saved: fix the problems first."
    path = ctx.recipe_path(name or "")
    atomic_write_text(path, text if text.endswith("\n") else text + "\n")
    return message + f"\n\nSaved `{ctx.relative(path)}`."


def upload(ctx: AppContext, file: Any) -> tuple[str, str]:
    """A recipe uploaded from the computer into the editor (not saved until Save); size-limited."""
    if file is None:
        return gr.skip(), ""
    path = Path(file if isinstance(file, str) else file.name)
    if path.stat().st_size > ctx.max_upload_bytes:
        return gr.skip(), f"**Refused.** The file is larger than {ctx.max_upload_bytes // 1000} kB."
    try:
        return path.read_text(encoding="utf-8"), "Uploaded into the editor: Validate, then Save."
    except UnicodeDecodeError:
        return gr.skip(), "**Refused.** Not a UTF-8 text file."


def build(ctx: AppContext, run_picker: gr.Dropdown) -> Refresh:
    gr.Markdown("Edit a recipe: problems are listed with their field before anything runs. "
                "Save writes only a valid recipe.")
    with gr.Row(equal_height=True):
        name = gr.Dropdown(choices=ctx.recipe_files(), value=None, allow_custom_value=True,
                           label="recipe file (in the workspace)", scale=4, elem_id="recipe-file")
        open_button = gr.Button("Open", scale=1, elem_id="recipe-open")
        uploader = gr.UploadButton("Upload…", file_types=[".yaml", ".yml"], scale=1, elem_id="recipe-upload")
    editor = gr.Code(language="yaml", label="recipe", lines=24, interactive=True, elem_id="recipe-editor")
    with gr.Row():
        check = gr.Button("Validate", elem_id="recipe-validate")
        write = gr.Button("Save", variant="primary", elem_id="recipe-save")
    messages = gr.Markdown(elem_id="recipe-messages")
    open_button.click(lambda n: open_recipe(ctx, n), inputs=name, outputs=[editor, messages])
    name.input(lambda n: open_recipe(ctx, n), inputs=name, outputs=[editor, messages])
    check.click(lambda n, t: validate(ctx, n, t)[1], inputs=[name, editor], outputs=messages)
    write.click(lambda n, t: save(ctx, n, t), inputs=[name, editor], outputs=messages).then(
        lambda n: gr.Dropdown(choices=ctx.recipe_files(), value=n), inputs=name, outputs=name)
    uploader.upload(lambda f: upload(ctx, f), inputs=uploader, outputs=[editor, messages])
    # the list only: a file name being typed is left alone
    return Refresh(lambda: gr.update(choices=ctx.recipe_files()), [], [name])
