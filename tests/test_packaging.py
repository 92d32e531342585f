"""The package list in pyproject.toml names every package folder, so a wheel ships all of the code."""

from __future__ import annotations

import tomllib

from .recipes import ROOT


def _declared() -> tuple[set[str], dict[str, str]]:
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    return set(settings["packages"]), settings.get("package-dir", {})


def test_every_package_folder_is_in_the_wheel() -> None:
    packages, folders = _declared()
    on_disk = set()
    for name, folder in {"workbench": "workbench", **folders}.items():
        root = ROOT / folder
        for init in root.rglob("__init__.py"):
            parts = init.parent.relative_to(root).parts
            on_disk.add(".".join((name, *parts)))
    assert on_disk - packages == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert packages - on_disk == set(), "these listed packages have no folder"
