from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from movielens_gnn.data.download import download, extract_zip, md5sum, verify_archive
from movielens_gnn.data.datasets.ml100k import MovieLens100K
from tests.synthetic import write_ml100k, zip_folder


@pytest.fixture
def archive(tmp_path: Path) -> tuple[Path, str, int]:
    """A synthetic ml-100k.zip in its own folder, with its md5 and size."""
    source = tmp_path / "source"
    folder = write_ml100k(source)
    payload = zip_folder(folder, source / "ml-100k.zip")
    return source / "ml-100k.zip", hashlib.md5(payload).hexdigest(), len(payload)


@pytest.fixture
def expect_archive(monkeypatch, archive):
    """Make MovieLens100K expect the synthetic archive's checksum instead of the real one."""
    path, md5, size = archive
    monkeypatch.setattr(MovieLens100K, "ARCHIVE_MD5", md5)
    monkeypatch.setattr(MovieLens100K, "ARCHIVE_SIZE", size)
    return archive


@pytest.fixture
def http_url(archive):
    """Serve the archive's folder on a loopback HTTP server; yields the archive's URL."""
    path = archive[0]
    handler = functools.partial(_QuietHandler, directory=str(path.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{path.name}"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_md5sum_matches_hashlib(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"movielens" * 1000)
    assert md5sum(path) == hashlib.md5(b"movielens" * 1000).hexdigest()


def test_verify_archive_mismatch_names_path_and_hashes_and_renames_file_aside(tmp_path):
    path = tmp_path / "ml-100k.zip"
    path.write_bytes(b"not the archive")
    actual = hashlib.md5(b"not the archive").hexdigest()
    with pytest.raises(ValueError) as err:
        verify_archive(path, MovieLens100K.ARCHIVE_MD5, MovieLens100K.ARCHIVE_SIZE)
    message = str(err.value)
    assert str(path) in message and MovieLens100K.ARCHIVE_MD5 in message and actual in message
    assert "4,924,029" in message and "ml-100k.zip.bad" in message
    assert not path.exists() and (tmp_path / "ml-100k.zip.bad").read_bytes() == b"not the archive"


def test_verify_archive_checks_size_too(tmp_path):
    path = tmp_path / "a.zip"
    path.write_bytes(b"abc")
    with pytest.raises(ValueError, match="3 bytes"):
        verify_archive(path, hashlib.md5(b"abc").hexdigest(), size=4)


def test_download_over_http_verifies_and_leaves_no_partial_file(tmp_path, archive, http_url):
    _, md5, size = archive
    dest = tmp_path / "out" / "ml-100k.zip"
    download(http_url, dest, md5, size)
    assert md5sum(dest) == md5
    assert sorted(p.name for p in dest.parent.iterdir()) == ["ml-100k.zip"]


def test_download_with_wrong_checksum_keeps_nothing(tmp_path, archive, http_url):
    dest = tmp_path / "out" / "ml-100k.zip"
    with pytest.raises(ValueError, match="Checksum mismatch"):
        download(http_url, dest, "0" * 32, archive[2])
    assert not dest.parent.exists()  # the folder it created for the download is gone too


def test_download_unreachable_raises_connection_error(tmp_path):
    dest = tmp_path / "ml-100k.zip"
    with pytest.raises(ConnectionError, match="Could not download"):
        download((tmp_path / "nowhere.zip").as_uri(), dest, "0" * 32)
    assert list(tmp_path.iterdir()) == []


def test_extract_zip_is_atomic_and_ignores_stale_temp_folders(tmp_path, archive):
    root = tmp_path / "root"
    root.mkdir()
    (root / ".ml-100k.abc.tmp").mkdir()  # what an interrupted run would leave behind
    dest = extract_zip(archive[0], root / "ml-100k", "ml-100k")
    assert (dest / "u.data").read_bytes() == (archive[0].parent / "ml-100k" / "u.data").read_bytes()
    assert sorted(p.name for p in root.iterdir()) == [".ml-100k.abc.tmp", "ml-100k"]


def test_extract_zip_rejects_non_zip(tmp_path):
    bad = tmp_path / "ml-100k.zip"
    bad.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a valid zip"):
        extract_zip(bad, tmp_path / "ml-100k", "ml-100k")
    assert not (tmp_path / "ml-100k").exists()


def test_prepare_downloads_from_file_url_then_reuses_folder(tmp_path, expect_archive):
    path = expect_archive[0]
    dataset = MovieLens100K(tmp_path / "root", url=path.as_uri())
    raw = dataset.prepare()
    assert (raw / "u.data").is_file() and dataset.archive.is_file()
    # Second call: the folder is there, so the URL is never read.
    dataset.url = (tmp_path / "gone.zip").as_uri()
    assert dataset.prepare() == raw


def test_prepare_extracts_local_archive_without_network(tmp_path, expect_archive):
    root = tmp_path / "root"
    root.mkdir()
    (root / "ml-100k.zip").write_bytes(expect_archive[0].read_bytes())
    dataset = MovieLens100K(root, url=(tmp_path / "unreachable.zip").as_uri())
    assert (dataset.prepare() / "u.item").is_file()


def test_prepare_over_http(tmp_path, expect_archive, http_url):
    assert (MovieLens100K(tmp_path / "root", url=http_url).prepare() / "u1.base").is_file()


def test_prepare_without_data_or_network_says_where_to_put_files(tmp_path):
    dataset = MovieLens100K(tmp_path / "empty", url=(tmp_path / "nowhere.zip").as_uri())
    with pytest.raises(FileNotFoundError) as err:
        dataset.prepare()
    message = str(err.value)
    assert "ml-100k.zip" in message and "--data.root" in message and str(dataset.raw_dir.resolve()) in message
    assert not dataset.raw_dir.exists()


def test_prepare_with_corrupt_local_archive_renames_it_aside(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "ml-100k.zip").write_bytes(b"truncated download")
    with pytest.raises(ValueError, match="expected md5 0e33842e24a9c977be4e0107933c0723"):
        MovieLens100K(root).prepare()
    assert [p.name for p in root.iterdir()] == ["ml-100k.zip.bad"]  # the user's file is kept, out of the way
