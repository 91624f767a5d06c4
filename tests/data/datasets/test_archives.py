"""Per GroupLens dataset: download from a file:// URL, checksum mismatch, truncated archive, atomic extract."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from movielens_gnn.data.datasets import dataset_class
from tests.formats import WRITERS, archive_of

NAMES = list(WRITERS)


@pytest.fixture
def source(tmp_path, monkeypatch, request):
    """``(dataset class, archive path, payload)``: a fixture archive of the dataset, expected by the class."""
    cls = dataset_class(request.param)
    folder = WRITERS[request.param](tmp_path / "source")
    archive = tmp_path / "source" / f"{cls.NAME}.zip"
    payload = archive_of(folder, archive)
    monkeypatch.setattr(cls, "ARCHIVE_MD5", hashlib.md5(payload).hexdigest())
    monkeypatch.setattr(cls, "ARCHIVE_SIZE", len(payload))
    return cls, archive, payload


@pytest.mark.parametrize("source", NAMES, indirect=True)
def test_download_verify_extract_then_load(tmp_path, source):
    cls, archive, _ = source
    root = tmp_path / "root"
    dataset = cls(root, url=archive.as_uri())
    assert dataset.prepare() == root / (cls.FOLDER or cls.NAME)
    assert (root / f"{cls.NAME}.zip").is_file() and not list(root.glob(".*tmp*"))
    side, ratings = dataset.load()
    assert len(ratings) == 240 and len(side.items) == 28


@pytest.mark.parametrize("source", NAMES, indirect=True)
def test_checksum_mismatch_names_path_hashes_and_what_to_do(tmp_path, source):
    cls, _, payload = source
    root = tmp_path / "root"
    root.mkdir()
    local = root / f"{cls.NAME}.zip"
    other = WRITERS[cls.NAME](tmp_path / "other", seed=5)  # a valid archive of other ratings: another release
    archive_of(other, local)
    actual = hashlib.md5(local.read_bytes()).hexdigest()
    with pytest.raises(ValueError) as caught:
        cls(root).prepare()
    message = str(caught.value)
    assert f"Checksum mismatch for {local}" in message and cls.ARCHIVE_MD5 in message and actual in message
    assert not (root / (cls.FOLDER or cls.NAME)).exists()
    if cls.DEVELOPMENT:  # a newer release may be wanted: kept in place, and the way to accept it is named
        assert "pass --data.verify false" in message and local.is_file()
        cls(root, verify=False).prepare()
        assert (root / cls.NAME / "ratings.csv").is_file()
    else:
        assert "run again to download a fresh copy" in message and (root / f"{cls.NAME}.zip.bad").is_file()


@pytest.mark.parametrize("source", NAMES, indirect=True)
def test_truncated_archive_is_refused_and_nothing_half_extracted(tmp_path, source):
    cls, _, payload = source
    root = tmp_path / "root"
    root.mkdir()
    (root / f"{cls.NAME}.zip").write_bytes(payload[: len(payload) // 2])
    with pytest.raises(ValueError, match=rf"expected md5 {cls.ARCHIVE_MD5}, {len(payload):,} bytes; got md5 \w+, "
                                         rf"{len(payload) // 2:,} bytes"):
        cls(root).prepare()
    (root / f"{cls.NAME}.zip").write_bytes(payload[: len(payload) // 2])
    with pytest.raises(ValueError, match="is not a valid zip archive"):  # even unverified, a broken zip is refused
        cls(root, verify=False).prepare()
    kept = [f"{cls.NAME}.zip"] + ([] if cls.DEVELOPMENT else [f"{cls.NAME}.zip.bad"])  # the first one moved aside
    assert sorted(p.name for p in root.iterdir()) == kept  # no folder, no temporary left


def test_missing_raw_file_is_named(tmp_path):
    folder = WRITERS["ml-1m"](tmp_path)
    (folder / "users.dat").unlink()
    with pytest.raises(FileNotFoundError, match=r"ml-1m is missing users\.dat; expected the MovieLens-1M files "
                                                r"ratings\.dat, users\.dat, movies\.dat"):
        dataset_class("ml-1m")(tmp_path).load()


def test_nothing_local_and_no_network_says_where_to_put_the_archive(tmp_path):
    cls = dataset_class("ml-25m")
    with pytest.raises(FileNotFoundError, match=r"MovieLens-25M was not found under .* Put the extracted folder at "
                                                r".*ml-25m or the archive at .*ml-25m\.zip"):
        cls(tmp_path, url=(tmp_path / "nowhere.zip").as_uri()).prepare()
