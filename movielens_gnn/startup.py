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
import time
from collections.abc import Iterable, Mapping
from types import ModuleType

from movielens_gnn.clock import process_seconds

# Every fit imports these; together they are most of the Python that a start compiles or loads.
CORE_PACKAGES = ("torch", "pytorch_lightning", "torchmetrics", "sympy")
# Imported by torchmetrics's own __init__ when installed (its text, image, detection and audio
# metrics), and by nothing here.
UNUSED_EXTRAS = ("transformers", "torchvision", "scipy")


def bytecode_cache(names: Iterable[str] = CORE_PACKAGES, modules: Mapping[str, ModuleType] | None = None,
                   started_at: float | None = None) -> dict[str, str]:
    """Where each loaded package's bytecode came from: ``"cached"``, ``"written"`` or ``"missing"``.

    Looks at the cache file of each package's ``__init__`` after loading, where Python reads it:
    ``__pycache__`` beside the source, or the mirror tree under ``sys.pycache_prefix``
    (``PYTHONPYCACHEPREFIX``), which then replaces the packages' own. ``"missing"``: compiled in this
    process and not saved, so every start compiles it again; ``"written"``: compiled in this process
    and saved (modified after the process started), so only this start paid; ``"cached"``: loaded
    from a cache made earlier. Packages not loaded, loaded from bytecode alone or from an extension
    are left out.

    Args:
        names: Top-level package names to look at.
        modules: Loaded modules by name (default ``sys.modules``).
        started_at: The process's start as a ``time.time()`` value (default: read from ``/proc``; where
            it cannot be read, no file counts as written by this process).
    """
    modules = sys.modules if modules is None else modules
    if started_at is None:
        age = process_seconds()
        started_at = time.time() - age if age is not None else float("inf")
    state = {}
    for name in names:
        spec = getattr(modules.get(name), "__spec__", None)
        origin = getattr(spec, "origin", None)
        if not origin or not origin.endswith(".py"):
            continue
        try:
            cached = importlib.util.cache_from_source(origin)
        except NotImplementedError:  # an interpreter without a cache tag keeps no bytecode cache
            continue
        try:
            # /proc's start time has a 10 ms resolution: a file from just before it counts as earlier.
            state[name] = "written" if os.stat(cached).st_mtime >= started_at + 0.01 else "cached"
        except FileNotFoundError:
            state[name] = "missing"
    return state


def unused_extras_loaded(modules: Mapping[str, ModuleType] | None = None) -> list[str]:
    """The packages of ``UNUSED_EXTRAS`` that this process has imported (through torchmetrics)."""
    modules = sys.modules if modules is None else modules
    return [name for name in UNUSED_EXTRAS if name in modules]


def slow_start_hints(start_up_s: float, slow_s: float = 5.0, modules: Mapping[str, ModuleType] | None = None,
                     dont_write_bytecode: bool | None = None, pycache_prefix: str | None = "",
                     started_at: float | None = None) -> list[str]:
    """What to change, when a start-up took more than ``slow_s`` seconds; nothing when it was quick.

    Args:
        start_up_s: Seconds from process start to the first epoch.
        slow_s: Start-ups up to this long get no hints.
        modules: Loaded modules by name (default ``sys.modules``).
        dont_write_bytecode: Whether this Python may not write bytecode (default ``sys.dont_write_bytecode``,
            set by ``PYTHONDONTWRITEBYTECODE`` or ``-B``).
        pycache_prefix: The bytecode cache's folder when not the packages' own (default ``""``: this
            process's ``sys.pycache_prefix``).
        started_at: The process's start, see :func:`bytecode_cache`.

    Returns:
        Sentences for the fit's closing timing line, possibly none.
    """
    if start_up_s <= slow_s:
        return []
    dont_write = sys.dont_write_bytecode if dont_write_bytecode is None else dont_write_bytecode
    prefix = sys.pycache_prefix if pycache_prefix == "" else pycache_prefix
    state = bytecode_cache(modules=modules, started_at=started_at)
    missing = [name for name, where in state.items() if where == "missing"]
    written = [name for name, where in state.items() if where == "written"]
    hints = []
    if missing:
        where = f"under PYTHONPYCACHEPREFIX ({prefix})" if prefix else "in their __pycache__ folders"
        if dont_write:
            fix = "unset PYTHONDONTWRITEBYTECODE to keep one"
        elif prefix:
            fix = "point PYTHONPYCACHEPREFIX at a folder Python may write to"
        else:
            fix = "set PYTHONPYCACHEPREFIX to a folder Python may write to"
        hint = f"Python compiled {', '.join(missing)} afresh, with no bytecode cache {where}, and "
        hint += ("PYTHONDONTWRITEBYTECODE keeps it from writing one" if dont_write else "could not write one")
        hint += f": {fix}"
        if prefix:
            hint += " (or unset PYTHONPYCACHEPREFIX, so Python reads the packages' own caches)"
        hints.append(hint)
    if written:
        hints.append(f"Python compiled {', '.join(written)} in this process and kept the bytecode: later "
                     "starts skip that")
    extras = unused_extras_loaded(modules)
    if extras:
        hints.append(f"torchmetrics imported {', '.join(extras)}, installed here but unused: a virtual "
                     "environment with only this project's dependencies starts without them")
    return hints
