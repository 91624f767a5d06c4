from __future__ import annotations

import importlib.util
import os
import py_compile
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

from movielens_gnn import progress
from movielens_gnn.progress import EpochLines
from movielens_gnn.startup import bytecode_cache, slow_start_hints, unused_extras_loaded


def _package(root: Path, name: str, compiled: bool, mtime: float | None = None) -> ModuleType:
    """A package ``name`` under ``root`` as a loaded-module stand-in, with or without its bytecode file
    (dated ``mtime`` when given)."""
    source = root / name / "__init__.py"
    source.parent.mkdir(parents=True)
    source.write_text("VALUE = 1\n")
    if compiled:
        cached = importlib.util.cache_from_source(str(source))
        py_compile.compile(str(source), cfile=cached, doraise=True)
        if mtime is not None:
            os.utime(cached, (mtime, mtime))
    module = ModuleType(name)
    module.__spec__ = importlib.util.spec_from_file_location(name, source)
    return module


def test_each_package_is_missing_written_or_cached(tmp_path):
    started = time.time() - 60
    modules = {"fresh": _package(tmp_path, "fresh", compiled=False),
               "new": _package(tmp_path, "new", compiled=True, mtime=started + 30),
               "old": _package(tmp_path, "old", compiled=True, mtime=started - 30),
               "builtin_like": ModuleType("builtin_like")}  # no spec origin: left out
    state = bytecode_cache(["fresh", "new", "old", "builtin_like", "not_loaded"], modules, started_at=started)
    assert state == {"fresh": "missing", "new": "written", "old": "cached"}


def test_real_interpreters_are_told_apart(tmp_path):
    """Real imports in fresh interpreters: with PYTHONDONTWRITEBYTECODE the package stays uncompiled on
    disk (every start compiles it); without it the first start writes the cache, the second reads it."""
    (tmp_path / "lib" / "pkg").mkdir(parents=True)
    (tmp_path / "lib" / "pkg" / "__init__.py").write_text("VALUE = 1\n")
    code = "import pkg; from movielens_gnn.startup import bytecode_cache; print(bytecode_cache(['pkg'])['pkg'])"
    repo = Path(__file__).resolve().parents[1]

    def run(**env: str) -> str:
        environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
        environment.update(PYTHONPATH=os.pathsep.join([str(tmp_path / "lib"), str(repo)]), **env)
        return subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True,
                              check=True).stdout.strip()

    prefix = tmp_path / "pycache"
    assert run(PYTHONDONTWRITEBYTECODE="1", PYTHONPYCACHEPREFIX=str(prefix)) == "missing"
    assert not prefix.exists()
    assert run(PYTHONPYCACHEPREFIX=str(prefix)) == "written"
    assert list(prefix.rglob("__init__*.pyc"))
    time.sleep(0.05)  # the next process starts after the file was written
    assert run(PYTHONPYCACHEPREFIX=str(prefix)) == "cached"


def test_unused_extras_are_those_loaded():
    assert unused_extras_loaded({"scipy": ModuleType("scipy"), "torch": ModuleType("torch")}) == ["scipy"]
    assert unused_extras_loaded({}) == []


def test_hints_only_for_a_slow_start_and_only_for_causes_found(tmp_path):
    modules = {"torch": _package(tmp_path, "torch", compiled=False), "transformers": ModuleType("transformers"),
               "scipy": ModuleType("scipy")}
    assert slow_start_hints(4.9, modules=modules) == []
    hints = slow_start_hints(17.0, modules=modules, dont_write_bytecode=True, pycache_prefix=None)
    assert hints == [
        "Python compiled torch afresh, with no bytecode cache in their __pycache__ folders, and "
        "PYTHONDONTWRITEBYTECODE keeps it from writing one: unset PYTHONDONTWRITEBYTECODE to keep one",
        "torchmetrics imported transformers, scipy, installed here but unused: a virtual environment with only "
        "this project's dependencies starts without them"]
    read_only = slow_start_hints(17.0, modules=modules, dont_write_bytecode=False, pycache_prefix=None)[0]
    assert read_only.endswith("could not write one: set PYTHONPYCACHEPREFIX to a folder Python may write to")
    cached = {"torch": _package(tmp_path / "other", "torch", compiled=True, mtime=time.time() - 60)}
    assert slow_start_hints(17.0, modules=cached, dont_write_bytecode=True, started_at=time.time() - 10) == []


def test_hints_name_the_cache_prefix_and_a_cache_written_now(tmp_path):
    started = time.time() - 10
    module = _package(tmp_path, "torch", compiled=False)
    hint = slow_start_hints(17.0, modules={"torch": module}, dont_write_bytecode=True, pycache_prefix="/tmp/empty",
                            started_at=started)[0]
    assert "no bytecode cache under PYTHONPYCACHEPREFIX (/tmp/empty)" in hint
    assert hint.endswith("(or unset PYTHONPYCACHEPREFIX, so Python reads the packages' own caches)")
    written = {"sympy": _package(tmp_path / "new", "sympy", compiled=True, mtime=started + 5)}
    assert slow_start_hints(17.0, modules=written, dont_write_bytecode=False, pycache_prefix=None,
                            started_at=started) == [
        "Python compiled sympy in this process and kept the bytecode: later starts skip that"]


def test_the_fit_timing_line_carries_the_hints(monkeypatch):
    bar = EpochLines()
    bar._epochs_run, bar._start_up_s = 10, 17.25
    monkeypatch.setattr(progress, "slow_start_hints", lambda seconds: [f"cause one of {seconds}", "cause two"])
    assert bar.time_line(1.0) == ("trained 10 epochs in 1.00 s (100.0 ms an epoch, validation and checkpoints "
                                  "included); 17.2 s from process start to the first epoch. Slow start-up: cause one "
                                  "of 17.25; cause two")
    monkeypatch.setattr(progress, "slow_start_hints", lambda seconds: [])
    assert bar.time_line(1.0).endswith("17.2 s from process start to the first epoch")
