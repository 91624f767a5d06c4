from __future__ import annotations

import importlib.util
import os
import py_compile
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from movielens_gnn import progress
from movielens_gnn.progress import EpochLines
from movielens_gnn.startup import slow_start_hints, unused_extras_loaded, without_bytecode_cache


def _package(root: Path, name: str, compiled: bool) -> ModuleType:
    """A package ``name`` under ``root`` as a loaded-module stand-in, with or without its bytecode file."""
    source = root / name / "__init__.py"
    source.parent.mkdir(parents=True)
    source.write_text("VALUE = 1\n")
    if compiled:
        py_compile.compile(str(source), cfile=importlib.util.cache_from_source(str(source)), doraise=True)
    module = ModuleType(name)
    module.__spec__ = importlib.util.spec_from_file_location(name, source)
    return module


def test_packages_without_a_bytecode_file_are_named(tmp_path):
    modules = {"fresh": _package(tmp_path, "fresh", compiled=False),
               "cached": _package(tmp_path, "cached", compiled=True),
               "builtin_like": ModuleType("builtin_like")}  # no spec origin: skipped
    assert without_bytecode_cache(["fresh", "cached", "builtin_like", "not_loaded"], modules) == ["fresh"]


def test_an_interpreter_that_may_not_write_bytecode_is_caught(tmp_path):
    """Real imports in fresh interpreters: with PYTHONDONTWRITEBYTECODE the package stays uncompiled on
    disk (every start compiles it), without it Python writes the cache and nothing is reported."""
    (tmp_path / "lib" / "pkg").mkdir(parents=True)
    (tmp_path / "lib" / "pkg" / "__init__.py").write_text("VALUE = 1\n")
    code = ("import pkg, sys; from movielens_gnn.startup import without_bytecode_cache; "
            "print(without_bytecode_cache(['pkg']))")
    repo = Path(__file__).resolve().parents[1]

    def run(**env: str) -> str:
        environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
        environment.update(PYTHONPATH=os.pathsep.join([str(tmp_path / "lib"), str(repo)]), **env)
        return subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True,
                              check=True).stdout.strip()

    prefix = tmp_path / "pycache"
    assert run(PYTHONDONTWRITEBYTECODE="1", PYTHONPYCACHEPREFIX=str(prefix)) == "['pkg']"
    assert not prefix.exists()
    assert run(PYTHONPYCACHEPREFIX=str(prefix)) == "[]"  # the prefix folder now holds the cache
    assert list(prefix.rglob("__init__*.pyc"))


def test_unused_extras_are_those_loaded():
    assert unused_extras_loaded({"scipy": ModuleType("scipy"), "torch": ModuleType("torch")}) == ["scipy"]
    assert unused_extras_loaded({}) == []


def test_hints_only_for_a_slow_start_and_only_for_causes_found(tmp_path):
    modules = {"torch": _package(tmp_path, "torch", compiled=False), "transformers": ModuleType("transformers"),
               "scipy": ModuleType("scipy")}
    assert slow_start_hints(4.9, modules=modules) == []
    hints = slow_start_hints(17.0, modules=modules, dont_write_bytecode=True)
    assert len(hints) == 2
    assert hints[0].startswith("Python compiled torch afresh") and "unset it" in hints[0]
    assert hints[1].startswith("torchmetrics imported transformers, scipy,")
    read_only = slow_start_hints(17.0, modules=modules, dont_write_bytecode=False)[0]
    assert "read-only; set PYTHONPYCACHEPREFIX" in read_only and "PYTHONDONTWRITEBYTECODE" not in read_only
    cached = {"torch": _package(tmp_path / "other", "torch", compiled=True)}
    assert slow_start_hints(17.0, modules=cached, dont_write_bytecode=True) == []


def test_the_fit_timing_line_carries_the_hints(monkeypatch):
    bar = EpochLines()
    bar._epochs_run, bar._start_up_s = 10, 17.25
    monkeypatch.setattr(progress, "slow_start_hints", lambda seconds: [f"cause one of {seconds}", "cause two"])
    assert bar.time_line(1.0) == ("trained 10 epochs in 1.00 s (100.0 ms an epoch, validation and checkpoints "
                                  "included); 17.2 s from process start to the first epoch. Slow start-up: cause one "
                                  "of 17.25; cause two")
    monkeypatch.setattr(progress, "slow_start_hints", lambda seconds: [])
    assert bar.time_line(1.0).endswith("17.2 s from process start to the first epoch")
