"""Why a process was slow to start, in terms its owner can change (stdlib only; read after the imports).

Two causes were found that have nothing to do with this project's code and can each double a ``fit``'s
start-up:

- **No bytecode cache.** Python compiles a module's source to bytecode on import and keeps the result in
  ``__pycache__`` beside it. Where it may not write there (``PYTHONDONTWRITEBYTECODE=1``, as many
  container images set, or a read-only environment) and nothing was compiled ahead, every process
  compiles torch, Lightning and sympy afresh: ``import movielens_gnn.cli`` took 8.8–9.4 s here on two CPU
  cores that way against 3.2–3.4 s with the cache. Unsetting ``PYTHONDONTWRITEBYTECODE`` lets the next
  start use what this one compiled; ``PYTHONPYCACHEPREFIX`` names a writable folder for the cache where
  the packages' own folders are read-only.
- **Unused extras.** ``import torchmetrics`` (Lightning imports it) also imports transformers, torchvision
  and scipy whenever they are installed, for metrics this project never uses: transformers and scipy
  added 1.8–2.1 s to that import here. A virtual environment holding only this project's dependencies
  (the README's install) does not have them.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterable, Mapping
from types import ModuleType

# Every fit imports these; together they are most of the Python that a start compiles or loads.
CORE_PACKAGES = ("torch", "pytorch_lightning", "torchmetrics", "sympy")
# Imported by torchmetrics's own __init__ when installed (its text, image, detection and audio
# metrics), and by nothing here.
UNUSED_EXTRAS = ("transformers", "torchvision", "scipy")


def without_bytecode_cache(names: Iterable[str] = CORE_PACKAGES,
                           modules: Mapping[str, ModuleType] | None = None) -> list[str]:
    """The loaded packages among ``names`` whose ``__init__`` has no bytecode cache file after loading.

    A package loaded from source whose cache file is still missing was compiled in this process and
    will be compiled again by the next (Python would have written the file if it could). The cache
    path honours ``sys.pycache_prefix`` (``PYTHONPYCACHEPREFIX``).

    Args:
        names: Top-level package names to look at; those not loaded are skipped.
        modules: Loaded modules by name (default ``sys.modules``).
    """
    modules = sys.modules if modules is None else modules
    missing = []
    for name in names:
        spec = getattr(modules.get(name), "__spec__", None)
        origin = getattr(spec, "origin", None)
        if not origin or not origin.endswith(".py"):
            continue  # not loaded, or loaded from bytecode alone or an extension: nothing to compile
        try:
            cached = importlib.util.cache_from_source(origin)
        except NotImplementedError:  # an interpreter without a cache tag keeps no bytecode cache
            continue
        if not os.path.exists(cached):
            missing.append(name)
    return missing


def unused_extras_loaded(modules: Mapping[str, ModuleType] | None = None) -> list[str]:
    """The packages of ``UNUSED_EXTRAS`` that this process has imported (through torchmetrics)."""
    modules = sys.modules if modules is None else modules
    return [name for name in UNUSED_EXTRAS if name in modules]


def slow_start_hints(start_up_s: float, slow_s: float = 5.0, modules: Mapping[str, ModuleType] | None = None,
                     dont_write_bytecode: bool | None = None) -> list[str]:
    """What to change, when a start-up took more than ``slow_s`` seconds; nothing when it was quick.

    Args:
        start_up_s: Seconds from process start to the first epoch.
        slow_s: Start-ups up to this long get no hints.
        modules: Loaded modules by name (default ``sys.modules``).
        dont_write_bytecode: Whether this Python may not write bytecode (default ``sys.dont_write_bytecode``,
            set by ``PYTHONDONTWRITEBYTECODE`` or ``-B``).

    Returns:
        Sentences for the fit's closing timing line, possibly none.
    """
    if start_up_s <= slow_s:
        return []
    dont_write = sys.dont_write_bytecode if dont_write_bytecode is None else dont_write_bytecode
    hints = []
    uncached = without_bytecode_cache(modules=modules)
    if uncached and dont_write:
        hints.append(f"Python compiled {', '.join(uncached)} afresh: they have no bytecode cache and "
                     "PYTHONDONTWRITEBYTECODE keeps Python from writing one; unset it to keep one (and set "
                     "PYTHONPYCACHEPREFIX to a writable folder if theirs is read-only)")
    elif uncached:
        hints.append(f"Python compiled {', '.join(uncached)} afresh: they have no bytecode cache and their "
                     "folders are read-only; set PYTHONPYCACHEPREFIX to a writable folder to keep one")
    extras = unused_extras_loaded(modules)
    if extras:
        hints.append(f"torchmetrics imported {', '.join(extras)}, installed here but unused: a virtual "
                     "environment with only this project's dependencies starts without them")
    return hints
