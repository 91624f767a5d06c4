from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from movielens_gnn.files import atomic_write, created_dirs, is_stale, remove_stale, temp_dir, temp_prefix


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _age(path: Path, seconds: float) -> Path:
    old = time.time() - seconds
    os.utime(path, (old, old))
    return path


def test_stale_rules(tmp_path):
    host = temp_prefix(tmp_path / "x").split(".")[3]
    mine = tmp_path / f".ml-100k.{os.getpid()}.{host}.abcd1234.tmp"
    dead = tmp_path / f".ml-100k.{_dead_pid()}.{host}.abcd1234.tmp"
    other_host = tmp_path / ".ml-100k.1.elsewhere.abcd1234.tmp"
    legacy = tmp_path / ".ml-100k.zip.abcd1234.part"
    for path in (mine, dead, other_host, legacy):
        path.mkdir()
    assert not is_stale(mine, "ml-100k")  # a live owner (this process)
    assert is_stale(dead, "ml-100k")  # its owner is gone: stale at once
    assert not is_stale(other_host, "ml-100k") and is_stale(_age(other_host, 120), "ml-100k")  # unknown owner: 1 min
    assert not is_stale(legacy, "ml-100k.zip") and is_stale(_age(legacy, 120), "ml-100k.zip")
    assert is_stale(_age(mine, 2 * 24 * 3600), "ml-100k")  # even a live pid, after a day
    assert not is_stale(tmp_path / "ml-100k", "ml-100k") and not is_stale(dead, "ml-100k.zip")  # other names


def test_remove_stale_keeps_live_and_foreign_entries(tmp_path):
    host = temp_prefix(tmp_path / "x").split(".")[3]
    live = tmp_path / f".ml-100k.{os.getpid()}.{host}.abcd1234.tmp"
    dead_dir = tmp_path / f".ml-100k.{_dead_pid()}.{host}.efgh5678.tmp"
    dead_file = tmp_path / f".ml-100k.{_dead_pid()}.{host}.ijkl9012.tmp"
    live.mkdir()
    dead_dir.mkdir()
    (dead_dir / "u.data").write_text("partial")
    dead_file.write_text("partial")
    (tmp_path / "ml-100k.zip").write_text("user file")
    removed = remove_stale(tmp_path, "ml-100k")
    assert sorted(removed) == sorted([dead_dir, dead_file])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "ml-100k.zip"])


def test_temp_names_carry_the_owner(tmp_path):
    folder = temp_dir(tmp_path / "ml-100k")
    assert folder.name.startswith(f".ml-100k.{os.getpid()}.") and folder.name.endswith(".tmp")
    assert not is_stale(folder, "ml-100k")


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    dest = tmp_path / "out.csv"
    dest.write_text("old\n")
    with pytest.raises(RuntimeError):
        with atomic_write(dest, "w") as handle:
            handle.write("half")
            raise RuntimeError("boom")
    assert dest.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["out.csv"]
    with atomic_write(dest, "w") as handle:
        handle.write("new\n")
    assert dest.read_text() == "new\n" and [p.name for p in tmp_path.iterdir()] == ["out.csv"]
    assert dest.stat().st_mode & 0o777 == 0o666 & ~_umask()  # not mkstemp's private 0600


def test_a_temporary_folder_gets_a_plain_folders_mode(tmp_path):
    from movielens_gnn.files import temp_dir

    made = temp_dir(tmp_path / "export")  # renamed into place as the finished folder
    assert made.parent == tmp_path and made.stat().st_mode & 0o777 == 0o777 & ~_umask()  # not mkdtemp's 0700


def test_an_interrupt_inside_torch_save_surfaces_as_the_interrupt(tmp_path):
    """Ctrl-C inside torch.save: its zip writer's cleanup raises RuntimeError ("unexpected pos ...") on top;
    atomic_write gives the KeyboardInterrupt back (exit 130, no traceback) and keeps nothing."""
    import torch

    dest = tmp_path / "model.ckpt"

    class Interrupted:  # the file, with Ctrl-C arriving during torch's third write to it
        def __init__(self, handle) -> None:
            self.handle, self.writes = handle, 0

        def write(self, data) -> int:
            self.writes += 1
            if self.writes == 3:
                raise KeyboardInterrupt
            return self.handle.write(data)

        def flush(self) -> None:
            self.handle.flush()

    with pytest.raises(KeyboardInterrupt):
        with atomic_write(dest) as handle:
            torch.save({"w": torch.zeros(100_000), "v": torch.ones(10)}, Interrupted(handle))
    assert list(tmp_path.iterdir()) == []


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_created_dirs_are_removed_on_failure_only(tmp_path):
    with pytest.raises(ValueError):
        with created_dirs(tmp_path / "a" / "b"):
            raise ValueError
    assert not (tmp_path / "a").exists()
    (tmp_path / "keep").mkdir()
    with pytest.raises(ValueError):
        with created_dirs(tmp_path / "keep" / "b") as folder:
            (folder / "f").write_text("x")  # not empty: kept
            raise ValueError
    assert (tmp_path / "keep" / "b" / "f").is_file()
    with created_dirs(tmp_path / "c" / "d"):
        pass
    assert (tmp_path / "c" / "d").is_dir()


def test_atomic_checkpoint_io_removes_dead_runs_temporaries_of_any_name(tmp_path):
    import torch

    from movielens_gnn.runs import AtomicCheckpointIO

    host = temp_prefix(tmp_path / "x").split(".")[3]
    leftover = tmp_path / f".epoch=3-val_rmse=0.9000.ckpt.{_dead_pid()}.{host}.abcd1234.tmp"
    leftover.write_bytes(b"half a checkpoint")
    AtomicCheckpointIO().save_checkpoint({"epoch": 4}, tmp_path / "last.ckpt")
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
    assert torch.load(tmp_path / "last.ckpt", weights_only=True) == {"epoch": 4}


def test_prepare_removes_a_killed_downloads_temporary_when_the_data_is_there(ml100k_root):
    from movielens_gnn.data.datasets.ml100k import MovieLens100K

    host = temp_prefix(ml100k_root / "x").split(".")[3]
    leftover = ml100k_root / f".ml-100k.zip.{_dead_pid()}.{host}.abcd1234.tmp"
    leftover.write_bytes(b"half an archive")
    MovieLens100K(ml100k_root).prepare()
    assert sorted(p.name for p in ml100k_root.iterdir()) == ["ml-100k"]
