"""Download, verify and extract archives without leaving half-written files behind."""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path
from typing import Literal

from movielens_gnn.files import atomic_write, created_dirs, remove_stale, temp_dir

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


def md5sum(path: Path) -> str:
    """Return the hex md5 digest of a file, read in chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_archive(path: Path, md5: str | None, size: int | None = None,
                   on_mismatch: Literal["rename", "keep", "temporary"] = "rename") -> None:
    """Check an archive's size and md5; raise when either is wrong.

    Args:
        path: The file to check.
        md5: The expected hex md5 digest; ``None`` skips the check (and the size check).
        size: The expected size in bytes, or ``None`` to skip the size check.
        on_mismatch: ``rename`` a mismatching file aside to ``<name>.bad`` (replacing an older one)
            so that the next run downloads a fresh copy and nothing of the user's is deleted;
            ``keep`` it in place (an archive that may be a newer release the user wants);
            ``temporary``: it is a download the caller removes.

    Raises:
        ValueError: The file does not match; the message names the path, both checksums and
            what to do.
    """
    if md5 is None:  # verification turned off (--data.verify false)
        return
    actual_size = path.stat().st_size
    actual_md5 = md5sum(path)
    if actual_md5 == md5 and (size is None or actual_size == size):
        return
    expected = f"md5 {md5}" + (f", {size:,} bytes" if size is not None else "")
    got = f"got md5 {actual_md5}, {actual_size:,} bytes"
    if on_mismatch == "temporary":
        raise ValueError(f"Checksum mismatch for the download of {path.name}: expected {expected}; {got}. "
                         "Nothing was kept; run again, or put a good copy of the archive in the data folder.")
    if on_mismatch == "keep":
        raise ValueError(f"Checksum mismatch for {path}: expected {expected}; {got}. It was left in place.")
    bad = path.with_name(path.name + ".bad")
    try:
        os.replace(path, bad)
        moved = f"It was renamed to {bad}; run again to download a fresh copy, or put a good copy at {path}."
    except OSError as err:
        moved = f"It could not be moved aside ({err.strerror}); replace it with a good copy."
    raise ValueError(f"Checksum mismatch for {path}: expected {expected}; {got}. {moved}")


def download(url: str, dest: Path, md5: str | None, size: int | None = None, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` through a temporary file, then verify it.

    ``file://`` URLs work too, which is how the tests exercise this without a network. Folders
    this creates for ``dest`` are removed again when the download fails.

    Args:
        url: Where to fetch from.
        dest: The final path of the archive.
        md5: The expected hex md5 digest.
        size: The expected size in bytes, if known.
        timeout: Socket timeout in seconds.

    Returns:
        ``dest``, verified.

    Raises:
        ConnectionError: The URL could not be read.
        ValueError: The downloaded bytes do not match the checksum.
    """
    with created_dirs(dest.parent):  # atomic_write first removes stale temporaries of dest
        log.info("Downloading %s to %s", url, dest)
        try:
            with atomic_write(dest) as out:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    shutil.copyfileobj(response, out, _CHUNK)
                out.flush()
                verify_archive(Path(out.name), md5, size, on_mismatch="temporary")
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as err:
            if isinstance(err, ValueError) and not str(err).startswith("unknown url type"):
                raise  # the checksum mismatch: its own message
            raise ConnectionError(f"Could not download {url}: {err}") from err
    return dest


class UnsafeArchive(ValueError):
    """An archive member's path would leave the extraction folder (``../x``, ``/etc/x``)."""


def _check_member(archive: Path, name: str, target: Path) -> None:
    """Raise :class:`UnsafeArchive` unless archive member ``name`` stays inside ``target`` once extracted."""
    resolved = (target / name).resolve()
    if name.startswith(("/", "\\")) or ":" in name.split("/")[0] or not resolved.is_relative_to(target.resolve()):
        raise UnsafeArchive(
            f"{archive} has an unsafe member path {name!r} that would be written outside the extraction folder; "
            "nothing was extracted. Delete the archive and download a fresh copy."
        )


def extract_zip(archive: Path, dest: Path, member_dir: str) -> Path:
    """Extract ``member_dir/`` from a zip archive to ``dest`` atomically.

    The archive is unpacked into a temporary folder beside ``dest`` (named for this process, so a
    later run removes it if this one is killed) and renamed into place, so an interrupted run never
    leaves a partial ``dest``. Every member's path is checked to stay inside the temporary folder
    before anything is written. When another process finished first, its copy is kept.

    Args:
        archive: The zip file.
        dest: The folder to create, e.g. ``root/ml-100k``.
        member_dir: The top-level folder inside the archive, e.g. ``"ml-100k"``.

    Returns:
        ``dest``.

    Raises:
        ValueError: The archive is not a valid zip file, has an unsafe member path, or lacks
            ``member_dir/``.
        PermissionError: The folder of ``dest`` is not writable (the message says what to do).
    """
    remove_stale(dest.parent, dest.name)
    try:
        tmp = temp_dir(dest)
    except OSError as err:
        raise PermissionError(
            f"Cannot extract {archive} into {dest.parent}: {err.strerror or err}. Make that folder writable, "
            f"extract the archive there yourself, or copy it to a writable --data.root."
        ) from err
    try:
        try:
            with zipfile.ZipFile(archive) as zf:
                members = zf.infolist()
                for member in members:
                    _check_member(archive, member.filename, tmp)
                for member in members:
                    zf.extract(member, tmp)
        except UnsafeArchive:
            raise
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError) as err:
            raise ValueError(
                f"{archive} is not a valid zip archive ({err}); delete it (or rename it aside) and run again "
                "to download a fresh copy."
            ) from err
        extracted = tmp / member_dir
        if not extracted.is_dir():
            raise ValueError(f"{archive} does not contain the folder {member_dir}/; it is not the expected archive. "
                             "Delete it and run again to download a fresh copy.")
        try:
            os.replace(extracted, dest)
        except OSError:
            if not dest.is_dir():
                raise
            log.info("%s appeared while extracting; keeping the existing copy", dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
