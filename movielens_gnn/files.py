"""Files that are never half-written: temporary names, atomic replacement, stale-temp cleanup.

Everything the project writes (archives, extracted folders, the processed cache, prediction CSVs,
checkpoints) is first written under a temporary name beside its destination and then renamed into
place. Temporary names carry their owner: ``.<dest name>.<pid>.<host>.<random>.tmp``, so that a
later run can tell a leftover of a killed process from the work of one still running and remove
only the former (:func:`remove_stale`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import IO, Iterator

log = logging.getLogger(__name__)

# A temp whose owner cannot be checked (another host, or an older naming) is stale after this long.
UNOWNED_STALE_SECONDS = 60.0
# Even a temp whose recorded owner pid is alive is stale after this long (the pid may have been reused).
OWNED_STALE_SECONDS = 24 * 3600.0


def _umask() -> int:
    """The process's umask (read by setting and restoring it; there is no other portable way)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Files are created private by mkstemp (folders by mkdtemp); once whole they get the mode a plain open()
# (or mkdir) would give.
_FILE_MODE = 0o666 & ~_umask()
_DIR_MODE = 0o777 & ~_umask()


@functools.lru_cache(maxsize=None)
def _host() -> str:
    """This machine's name plus its pid namespace: pids are only comparable within both (containers on
    one host share the hostname but not the pids)."""
    name = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"
    try:
        namespace = re.sub(r"\D", "", os.readlink("/proc/self/ns/pid"))
    except OSError:
        namespace = ""
    return f"{name}-{namespace}" if namespace else name


def temp_prefix(dest: Path) -> str:
    """The prefix of this process's temporary names for ``dest``: ``.<name>.<pid>.<host>.``."""
    return f".{dest.name}.{os.getpid()}.{_host()}."


def _temp_pattern(name: str | None) -> re.Pattern:
    """Temporary names of destination ``name``: the current naming, then the one used before owners
    were recorded (``.<name>.<random>.tmp|.part``). With ``name=None``, the current naming of any
    destination (the older one is too loose to match without knowing the name)."""
    if name is None:
        return re.compile(r"^\..+\.(?P<pid>\d+)\.(?P<host>[A-Za-z0-9-]+)\.[A-Za-z0-9_]+\.tmp$")
    return re.compile(
        rf"^\.{re.escape(name)}\.(?:(?P<pid>\d+)\.(?P<host>[A-Za-z0-9-]+)\.)?[A-Za-z0-9_]+\.(?:tmp|part)$"
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def is_stale(path: Path, name: str | None, now: float | None = None) -> bool:
    """Whether ``path``, a temporary of destination ``name`` (see :func:`temp_prefix`), was left
    behind by a dead run.

    Stale: the owner pid recorded in the name is on this host and no longer running; or the owner
    cannot be checked (another host, or no owner recorded) and it is older than a minute; or it is
    older than a day whatever the owner.
    """
    match = _temp_pattern(name).match(path.name)
    if match is None:
        return False
    try:
        age = (time.time() if now is None else now) - path.lstat().st_mtime
    except FileNotFoundError:
        return False
    if age > OWNED_STALE_SECONDS:
        return True
    pid, host = match.group("pid"), match.group("host")
    if pid is not None and host == _host():
        return int(pid) != os.getpid() and not _pid_alive(int(pid))
    return age > UNOWNED_STALE_SECONDS


def remove_stale(folder: Path, name: str | None = None) -> list[Path]:
    """Remove the stale temporaries of destination ``name`` (of any destination if ``None``) in
    ``folder`` (see :func:`is_stale`).

    Returns:
        The paths removed.
    """
    removed = []
    try:
        entries = list(folder.iterdir())
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return removed
    pattern = _temp_pattern(name)
    for path in entries:
        if not pattern.match(path.name) or not is_stale(path, name):
            continue
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:
            continue
        except OSError as err:  # read-only folder: nothing we can do, and nothing to fail for
            log.warning("Could not remove the stale temporary %s: %s", path, err)
            continue
        log.warning("Removed %s, left behind by an interrupted run", path)
        removed.append(path)
    return removed


def temp_dir(dest: Path) -> Path:
    """A new, empty temporary folder beside ``dest``, named for this process, with a plain mkdir's mode
    (it is renamed into place as the finished folder: an export, an extracted dataset)."""
    path = Path(tempfile.mkdtemp(prefix=temp_prefix(dest), suffix=".tmp", dir=dest.parent))
    os.chmod(path, _DIR_MODE)
    return path


@contextlib.contextmanager
def atomic_write(dest: Path, mode: str = "wb", encoding: str | None = None,
                 newline: str | None = None) -> Iterator[IO]:
    """Write ``dest`` through a temporary file beside it; rename into place only on success.

    On any exception (including ``KeyboardInterrupt`` and ``SystemExit``) the temporary file is
    removed and ``dest`` is left as it was.
    """
    remove_stale(dest.parent, dest.name)
    fd, name = tempfile.mkstemp(prefix=temp_prefix(dest), suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        with open(tmp, mode, encoding=encoding, newline=newline) as handle:  # handle.name is the temporary path
            yield handle
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, dest)
    except RuntimeError as err:
        # A Ctrl-C (or SIGTERM) inside torch.save surfaces as the RuntimeError its zip writer raises while
        # closing the half-written file ("unexpected pos ..."): give the interrupt back, so it is handled as one.
        if isinstance(err.__context__, BaseException) and not isinstance(err.__context__, Exception):
            raise err.__context__ from None
        raise
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def created_dirs(path: Path) -> Iterator[Path]:
    """Create ``path`` (and missing parents); on failure remove the folders this created if still empty."""
    new = []
    for folder in reversed([path, *path.parents]):
        if not folder.exists():
            new.append(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        yield path
    except BaseException:
        for folder in reversed(new):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty
        raise


def check_output_file(path: Path, option: str) -> None:
    """Raise unless ``path`` can be a file we write (not a folder; its parent not a file)."""
    if path.is_dir():
        raise IsADirectoryError(f"{option} {path} is a folder; expected a file path such as {path / 'predictions.csv'}.")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise NotADirectoryError(f"{option} {path}: {parent} is a file, not a folder; choose another path.")
            break
