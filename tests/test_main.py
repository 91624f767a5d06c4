"""The entry point (``python -m movielens_gnn``, ``movielens-gnn``): imports with the collector paused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO

# Records the collections that start while torch and the rest load for movielens_gnn.cli (torch imported,
# the module's `main`, near its end, not defined yet), then runs `start` and reports the collector's state.
PROBE = textwrap.dedent("""
    import gc, json, sys
    early = []
    def watch(phase, info):
        loading = "torch" in sys.modules and not hasattr(sys.modules.get("movielens_gnn.cli"), "main")
        if phase == "start" and loading:
            early.append(info["generation"])
    gc.callbacks.append(watch)
    {start}
    gc.callbacks.remove(watch)
    print(json.dumps({{"early": early, "enabled": gc.isenabled(), "frozen": gc.get_freeze_count()}}))
""")


def _probe(start: str) -> dict:
    result = subprocess.run([sys.executable, "-c", PROBE.format(start=start)], capture_output=True, text=True,
                            cwd=REPO, env={**os.environ, "PYTHONWARNINGS": "ignore"}, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_entry_point_loads_without_collections_and_freezes_what_it_loaded():
    entry = _probe("from movielens_gnn.__main__ import run\n"
                   "sys.argv = ['movielens-gnn', '--help']\n"
                   "try:\n    run()\nexcept SystemExit:\n    pass")
    assert entry["early"] == []
    assert entry["enabled"] is True  # back on for what the command itself creates
    assert entry["frozen"] > 100_000  # torch, Lightning and their imports: about 400,000 objects here
    # The control: a plain import runs full collections (generation 2) while those objects load.
    plain = _probe("import movielens_gnn.cli")
    assert 2 in plain["early"] and plain["frozen"] == 0


def test_installed_script_exits_zero_and_prints_once(ml100k_root):
    # pip's `movielens-gnn` wrapper calls sys.exit(run()): a command's return value (the CLI object, a
    # report's text) must not reach sys.exit, which would print it again and exit with status 1.
    script = os.path.join(os.path.dirname(sys.executable), "movielens-gnn")
    if not os.path.isfile(script):
        pytest.skip("the movielens-gnn script is not installed in this environment")
    result = subprocess.run([script, "describe", "--data.root", str(ml100k_root)], capture_output=True, text=True,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "ratings: 288" in result.stdout and "ratings: 288" not in result.stderr


def test_pandas_loads_only_to_parse_files(tmp_path, ml100k_root):
    """pandas (0.3 s of start-up) parses the raw files; a fit or test from the built cache never imports it."""
    code = textwrap.dedent("""
        import sys
        from movielens_gnn.cli import main
        main(sys.argv[1:])
        print("pandas" in sys.modules)
    """)
    common = ["--config", str(REPO / "configs" / "gcn_dot.yaml"), "--data.root", str(ml100k_root),
              "--data.cache_dir", str(tmp_path / "cache"), "--trainer.enable_progress_bar", "false",
              "--trainer.enable_model_summary", "false"]

    def loads_pandas(*args: str) -> str:
        result = subprocess.run([sys.executable, "-c", code, *args, *common], capture_output=True, text=True,
                                cwd=tmp_path, env={**os.environ, "PYTHONWARNINGS": "ignore"}, timeout=300)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip().splitlines()[-1]

    # The first run parses the files and builds the cache; the second and the test read it.
    assert loads_pandas("fit", "--trainer.fast_dev_run", "true") == "True"
    assert loads_pandas("fit", "--trainer.max_epochs", "1") == "False"
    (best,) = (tmp_path / "checkpoints" / "gcn_dot").glob("version_*/epoch=*.ckpt")
    assert loads_pandas("test", "--ckpt_path", str(best)) == "False"
