"""Download, verify and extract archives without leaving half-written files behind."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


def md5sum(path: Path) -> str:
    """Return the hex md5 digest of a file, read in chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_archive(path: Path, md5: str, size: int | None = None) -> None:
    """Check an archive's size and md5; remove it and raise when either is wrong.

    Args:
        path: The file to check.
        md5: The expected hex md5 digest.
        size: The expected size in bytes, or ``None`` to skip the size check.

    Raises:
        ValueError: The file does not match. The bad file is deleted so that the next run
            downloads a fresh copy instead of failing on the same bytes again.
    """
    actual_size = path.stat().st_size
    actual_md5 = md5sum(path)
    if actual_md5 == md5 and (size is None or actual_size == size):
        return
    path.unlink()
    expected = f"md5 {md5}" + (f", {size:,} bytes" if size is not None else "")
    raise ValueError(
        f"Checksum mismatch for {path}: expected {expected}; got md5 {actual_md5}, "
        f"{actual_size:,} bytes. The corrupt file was removed; run again to re-download it, "
        f"or put a good copy at {path}."
    )


def download(url: str, dest: Path, md5: str, size: int | None = None, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` through a temporary file, then verify it.

    ``file://`` URLs work too, which is how the tests exercise this without a network.

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
    dest.parent.mkdir(parents=True, exist_ok=True)
    log.info("Downloading %s to %s", url, dest)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            shutil.copyfileobj(response, out, _CHUNK)
        verify_archive(tmp, md5, size)
        os.replace(tmp, dest)
    except (urllib.error.URLError, OSError) as err:
        raise ConnectionError(f"Could not download {url}: {err}") from err
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def extract_zip(archive: Path, dest: Path, member_dir: str) -> Path:
    """Extract ``member_dir/`` from a zip archive to ``dest`` atomically.

    The archive is unpacked into a temporary folder beside ``dest`` and renamed into place,
    so an interrupted run never leaves a partial ``dest``. When another process finished
    first, its copy is kept.

    Args:
        archive: The zip file.
        dest: The folder to create, e.g. ``root/ml-100k``.
        member_dir: The top-level folder inside the archive, e.g. ``"ml-100k"``.

    Returns:
        ``dest``.

    Raises:
        ValueError: The archive is not a zip file or lacks ``member_dir/``.
    """
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        try:
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(tmp)
        except zipfile.BadZipFile as err:
            raise ValueError(f"{archive} is not a valid zip archive ({err}); delete it and run again.") from err
        extracted = tmp / member_dir
        if not extracted.is_dir():
            raise ValueError(f"{archive} does not contain the folder {member_dir}/.")
        try:
            os.replace(extracted, dest)
        except OSError:
            if not dest.is_dir():
                raise
            log.info("%s appeared while extracting; keeping the existing copy", dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
