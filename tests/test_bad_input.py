"""Bad input, as a table: every case exits 2 with one ``error:`` line and leaves the files as they were.

Each case runs the CLI in-process in a fresh working folder that holds a data root (synthetic
MovieLens-100K files plus their processed caches) and two checkpoints (trained on u1 and u2). The
folder's whole tree (data root, cache, checkpoints, logs) is fingerprinted before and after: it
must hold exactly what it held before, except for a change the case names (the archive renamed
to ``.bad``).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
import torch

from movielens_gnn.cli import main
from movielens_gnn.data.datamodule import MovieLensDataModule
from movielens_gnn.data.datasets.ml100k import MovieLens100K
from tests.conftest import REPO
from tests.synthetic import write_ml100k

CONFIG = str(REPO / "configs" / "gcn_dot.yaml")
QUIET = ["--trainer.enable_model_summary", "false", "--trainer.enable_progress_bar", "false"]
MARKER = "pwned.marker"


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A working folder to copy per case: ``data/`` (+ caches for u1, u2), ``other/`` (a different
    dataset of the same shape), ``wide/`` (30 users, not 24), both cached, and ``u1.ckpt``/``u2.ckpt``
    (gcn_dot, 2 epochs)."""
    base = tmp_path_factory.mktemp("bad_input")
    write_ml100k(base / "data")
    write_ml100k(base / "other", seed=5)
    write_ml100k(base / "wide", num_users=30)
    for root, split in (("data", "u1"), ("data", "u2"), ("other", "u1"), ("wide", "u1")):
        MovieLensDataModule(root=str(base / root), split=split).data  # writes the processed cache
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(base)
        for split in ("u1", "u2"):
            fit = main(["fit", "--config", CONFIG, "--data.root", str(base / "data"), "--data.split", split,
                        "--trainer.max_epochs", "2", "--trainer.logger", "false", *QUIET])
            shutil.copy(fit.trainer.checkpoint_callback.best_model_path, base / f"{split}.ckpt")
        shutil.rmtree(base / "checkpoints")
    return base


@dataclass
class Env:
    """One case's working folder (the current directory) and its monkeypatch."""

    work: Path
    monkeypatch: pytest.MonkeyPatch
    expected_changes: dict[str, str] = field(default_factory=dict)

    @property
    def raw(self) -> Path:
        return self.work / "data" / "ml-100k"

    def edit_line(self, name: str, number: int, text: str) -> None:
        path = self.raw / name
        lines = path.read_text(encoding="latin-1").splitlines(keepends=True)
        lines[number - 1] = text
        path.write_bytes("".join(lines).encode("latin-1"))

    def zip_root(self, payload: bytes, accept: bool = True) -> None:
        """Replace ``z/`` by a root holding only ``ml-100k.zip`` with ``payload``; ``accept`` makes
        the checksum match it, so extraction itself is what the case tests."""
        root = self.work / "z"
        root.mkdir()
        (root / "ml-100k.zip").write_bytes(payload)
        if accept:
            self.monkeypatch.setattr(MovieLens100K, "ARCHIVE_MD5", hashlib.md5(payload).hexdigest())
            self.monkeypatch.setattr(MovieLens100K, "ARCHIVE_SIZE", len(payload))


def _real_zip(env: Env) -> bytes:
    """The synthetic ``ml-100k/`` folder as zip bytes."""
    return _zip_bytes({f"ml-100k/{p.name}": p.read_bytes() for p in sorted(env.raw.iterdir())})


def _zip_bytes(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def _corrupt_deflate(env: Env) -> bytes:
    """A zip whose first member's compressed bytes are damaged (a bad deflate stream / CRC)."""
    data = bytearray(_real_zip(env))
    first = zipfile.ZipFile(io.BytesIO(bytes(data))).infolist()[0]
    start = first.header_offset + 30 + len(first.filename.encode()) + len(first.extra)
    for offset in range(start + 2, start + 12):
        data[offset] ^= 0xFF
    return bytes(data)


def _malicious_checkpoint(env: Env) -> None:
    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {env.work / MARKER}",))

    torch.save({"state_dict": {}, "hyper_parameters": {"num_users": 24, "num_items": 30}, "x": Payload()},
               env.work / "evil.ckpt")


def _deny_temp_dir(env: Env) -> None:
    """A read-only data folder (root ignores file modes, so the refusal is simulated)."""
    env.zip_root(_real_zip(env))

    def deny(dest: Path) -> Path:
        raise PermissionError(13, "Permission denied", str(dest.parent))

    env.monkeypatch.setattr("movielens_gnn.data.download.temp_dir", deny)


def _fit(*extra: str) -> list[str]:
    return ["fit", "--config", CONFIG, "--data.root", "data", *QUIET, *extra]


def _on(command: str, ckpt: str, *extra: str) -> list[str]:
    return [command, "--config", CONFIG, "--data.root", "data", "--ckpt_path", ckpt, *QUIET, *extra]


# (id, setup, argv, regex the error line must match after "error: ")
CASES: list[tuple[str, Callable[[Env], None] | None, list[str], str]] = [
    # --- data: where it is, archives, extraction
    ("root_is_a_file", lambda e: (e.work / "afile").write_text("x"), _fit()[:3] + ["--data.root", "afile"],
     r"--data\.root afile is a file; expected a folder that holds ml-100k/ or ml-100k\.zip"),
    ("ranking_ks_without_the_monitored_k", None,
     ["fit", "--config", str(REPO / "configs" / "mf_bpr.yaml"), "--data.root", "data", *QUIET, "--model.ranking_ks", "[5]"],
     r"--model\.ranking_ks \[5\] leaves out 10, but the config's ModelCheckpoint monitors val_ndcg@10, which would then "
     r"never be logged\. Add 10 to --model\.ranking_ks, e\.g\. \[5, 10\]\.$"),
    ("root_is_the_dataset_folder", None, _fit()[:3] + ["--data.root", "data/ml-100k"],
     r"--data\.root data/ml-100k holds MovieLens-100K's files itself \(u\.data, \.\.\.\); it names the folder above "
     r"ml-100k/\. Pass --data\.root /\S+/data instead\.$"),
    ("raw_folder_is_a_file", lambda e: (shutil.rmtree(e.raw), e.raw.write_text("x")), _fit(),
     r"ml-100k/ in --data\.root data/ml-100k is a file"),
    ("no_data_and_no_network", None, _fit("--data.root", "fresh", "--data.url", "file:///nonexistent/ml-100k.zip"),
     r"MovieLens-100K was not found under .*fresh and could not be downloaded"),
    ("malformed_download_url", None, _fit("--data.root", "fresh", "--data.url", "notaurl"),
     r"MovieLens-100K was not found under .*fresh and could not be downloaded \(Could not download notaurl: unknown url"),
    ("archive_checksum_mismatch", lambda e: (e.zip_root(_real_zip(e), accept=False),
                                              e.expected_changes.update({"z/ml-100k.zip": "z/ml-100k.zip.bad"})),
     _fit("--data.root", "z"), r"Checksum mismatch for z/ml-100k\.zip: expected md5 0e33842e24a9c977be4e0107933c0723, "
                               r"4,924,029 bytes; got md5 [0-9a-f]{32}, [\d,]+ bytes\. It was renamed to z/ml-100k\.zip\.bad"),
    ("archive_corrupt_deflate_member", lambda e: e.zip_root(_corrupt_deflate(e)), _fit("--data.root", "z"),
     r"z/ml-100k\.zip is not a valid zip archive \(.*\); delete it"),
    ("archive_not_a_zip", lambda e: e.zip_root(b"PK\x03\x04 but not really a zip" * 50), _fit("--data.root", "z"),
     r"z/ml-100k\.zip is not a valid zip archive"),
    ("archive_member_escapes_folder", lambda e: e.zip_root(_zip_bytes({"ml-100k/u.data": b"1\t1\t1\t1\n",
                                                                         "ml-100k/../../escaped.txt": b"x"})),
     _fit("--data.root", "z"), r"z/ml-100k\.zip has an unsafe member path 'ml-100k/\.\./\.\./escaped\.txt' that would be written outside"),
    ("archive_absolute_member", lambda e: e.zip_root(_zip_bytes({"/tmp/absolute.txt": b"x"})),
     _fit("--data.root", "z"), r"z/ml-100k\.zip has an unsafe member path '/tmp/absolute\.txt'"),
    ("archive_without_ml100k_folder", lambda e: e.zip_root(_zip_bytes({"other/u.data": b"x"})),
     _fit("--data.root", "z"), r"z/ml-100k\.zip does not contain the folder ml-100k/"),
    ("read_only_root_with_archive", _deny_temp_dir, _fit("--data.root", "z"),
     r"Cannot extract z/ml-100k\.zip into z: Permission denied\. Make that folder writable"),
    # --- data: the files' content
    ("missing_u_data", lambda e: (e.raw / "u.data").unlink(), _fit(), r"data/ml-100k is missing u\.data; expected"),
    ("rating_not_a_number", lambda e: e.edit_line("u.data", 10, "1\t1\tfive\t0\n"), _fit(),
     r"data/ml-100k/u\.data line 10: rating must be an integer in 1\.\.5, got 'five'\."),
    ("rating_out_of_range", lambda e: e.edit_line("u1.base", 3, "1\t2\t6\t881250949\n"), _fit(),
     r"data/ml-100k/u1\.base line 3: rating must be an integer in 1\.\.5, got '6'\."),
    ("trailing_separator_on_every_line",
     lambda e: (e.raw / "u1.base").write_text("".join(l + "\t\n" for l in (e.raw / "u1.base").read_text().splitlines())),
     _fit(), r"data/ml-100k/u1\.base line 1: expected 4 tab-separated fields \(user_id, item_id, rating, timestamp\), got 5"),
    ("whitespace_only_line", lambda e: e.edit_line("u.data", 5, " \t\n"), _fit(),
     r"data/ml-100k/u\.data line 5: expected 4 tab-separated fields .*, got 2"),
    ("missing_field", lambda e: e.edit_line("u1.test", 2, "1\t2\t3\n"), _fit(),
     r"data/ml-100k/u1\.test line 2: expected 4 tab-separated fields .*, got 3"),
    ("extra_field_in_u_user", lambda e: e.edit_line("u.user", 4, "4|25|M|writer|10004|extra\n"), _fit(),
     r"data/ml-100k/u\.user line 4: expected 5 '\|'-separated fields \(user_id, age, gender, occupation, zip_code\), got 6"),
    ("duplicate_rating", lambda e: e.edit_line("u.data", 2, (e.raw / "u.data").read_text().splitlines()[0] + "\n"),
     _fit(), r"data/ml-100k/u\.data line 2: user \d+ rated item \d+ twice"),
    ("unknown_user_in_split", lambda e: e.edit_line("u1.base", 5, "999\t1\t3\t881250949\n"), _fit(),
     r"data/ml-100k/u1\.base line 5: user_id 999 is not in the id list of u\.user"),
    ("u_info_disagrees", lambda e: (e.raw / "u.info").write_text("24 users\n30 items\n999 ratings\n"), _fit(),
     r"data/ml-100k/u\.data has 288 ratings; u\.info says 999"),
    ("empty_ratings_file", lambda e: (e.raw / "u.data").write_text(""), _fit(), r"data/ml-100k/u\.data is empty"),
    ("unknown_gender", lambda e: e.edit_line("u.user", 3, "3|30|X|writer|10003\n"), _fit(),
     r"data/ml-100k/u\.user line 3: gender 'X' is not one of M, F"),
    ("item_id_not_a_number", lambda e: e.edit_line("u.item", 7, "abc|T (1990)|01-Jan-1990||u|" + "|".join("0" * 19) + "\n"),
     _fit(), r"data/ml-100k/u\.item line 7: item_id must be an integer >= 1, got 'abc'"),
    # --- settings, checked before any data is read
    ("negative_max_epochs", None, _fit("--trainer.max_epochs", "-5"), r"--trainer\.max_epochs must be a number >= -1"),
    ("negative_min_epochs", None, _fit("--trainer.min_epochs", "-1"), r"--trainer\.min_epochs must be a number >= 0"),
    ("zero_width_layer", None, _fit("--model.hidden_dims", "[0]"),
     r"--model\.hidden_dims must be a list of positive integers, e\.g\. \[64\], got \[0\]"),
    ("negative_width_last_layer", None, _fit("--model.hidden_dims", "[-3]", "--model.combine", "last"),
     r"--model\.hidden_dims must be a list of positive integers, e\.g\. \[64\], got \[-3\]"),
    ("mean_of_unequal_widths", None, _fit("--model.hidden_dims", "[32,16]"),
     r"--model\.combine mean averages the outputs of the embedding and every layer, so --model\.hidden_dims must all "
     r"equal --model\.embedding_dim \(64\), got \[32, 16\]: give them that width, or use --model\.combine last"),
    ("mean_of_unequal_widths_ranking", None,
     ["fit", "--config", str(REPO / "configs" / "lightgcn_bpr.yaml"), "--data.root", "data", *QUIET,
      "--model.encoder", "graphconv", "--model.hidden_dims", "[16]"],
     r"--model\.combine mean averages .* --model\.embedding_dim \(64\), got \[16\]"),
    # An error raised while the task is built (past the CLI's checks, skipped here): jsonargparse wraps it
    # in its list of union types; the line keeps the task's name and the reason.
    ("task_error_at_instantiation",
     lambda e: e.monkeypatch.setattr("movielens_gnn.tasks.rating.check_layer_widths", lambda arguments: None),
     _fit("--model.hidden_dims", "[32,16]"),
     r"--model \(RatingModel\): combine='mean' needs embedding_dim and hidden_dims equal, got \[64, 32, 16\]\.$"),
    # jsonargparse gives a nested option to the last callback of the list and lists every class it tried.
    ("option_of_another_callback", None, _fit("--trainer.callbacks.dirpath", "elsewhere"),
     r"--trainer\.callbacks \(EarlyStopping\): Option 'dirpath' is not accepted\. See `python -m movielens_gnn"),
    ("negative_learning_rate", None, _fit("--model.optimizer.init_args.lr", "-1"),
     r"--model\.optimizer \(Adam\) refuses its settings: Invalid learning rate: -1\.0\. Fix the setting it names "
     r"under --model\.optimizer\.init_args\.$"),
    ("negative_data_seed", None, _fit("--data.seed", "-1"),
     r"--data\.seed must be an integer in 0\.\.18446744073709551615 \(numpy's and torch's generators take those\), "
     r"got -1\.$"),
    ("linked_model_option_given", None, _fit("--model.num_users", "5"),
     r"--model\.num_users is read from the data, which sizes the model, and cannot be set: drop it\.$"),
    ("rating_scale_given", None, _fit("--model.rating_values", "[1,2,3]"),
     r"--model\.rating_values is read from the data, .* The rating scale is the dataset's own"),
    ("zero_epochs", None, _fit("--trainer.max_epochs", "0"), r"--trainer\.max_epochs must be a number >= 1 \(-1: no limit\), got 0\.$"),
    # A callback that fails while being built: named under its own option, not --model.
    ("callback_refuses_its_setting", None,
     _fit("--trainer.callbacks+", "EarlyStopping", "--trainer.callbacks.monitor", "val_rmse",
          "--trainer.callbacks.mode", "bogus"),
     r"--trainer\.callbacks \(EarlyStopping\): `mode` can be min, max, got bogus"),
    ("zero_embedding", None, _fit("--model.embedding_dim", "0"), r"--model\.embedding_dim must be a positive integer"),
    ("dropout_above_one", None, _fit("--model.dropout", "1.5"), r"--model\.dropout must be a probability in \[0, 1\)"),
    ("negative_edge_dropout", None, _fit("--model.edge_dropout", "-0.1"), r"--model\.edge_dropout must be a probability"),
    ("ranking_cutoff_zero", None, _fit("--model.ranking_ks", "[0]"), r"--model\.ranking_ks must be a list of positive"),
    ("train_metrics_every_zero", None, _fit("--model.train_metrics_every_n_epochs", "0"),
     r"--model\.train_metrics_every_n_epochs must be a positive integer, got 0"),
    ("negative_autoencoder", None, _fit("--model.autoencoder_dim", "-1"), r"--model\.autoencoder_dim must be an integer >= 0"),
    ("val_fraction_above_one", None, _fit("--data.val_fraction", "1.5"),
     r"--data\.val_fraction must be strictly between 0 and 1, got 1\.5"),
    ("ratios_not_three_shares", None, _fit("--data.split", "ratio", "--data.ratios", "[0.5, 0.5]"),
     r"--data\.ratios must be three shares \[train, val, test\].*got \[0\.5, 0\.5\]"),
    ("zero_batch_size", None, _fit("--data.batch_size", "0"), r"--data\.batch_size must be a positive integer or null"),
    ("users_validation_fractions", None, _fit("--data.val_strategy", "users", "--data.val_fraction", "0.6"),
     r"--data\.val_strategy users needs 0 < --data\.val_fraction < --data\.val_user_fraction < 1, got 0\.6 and 0\.5"),
    ("unknown_split", None, _fit("--data.split", "u9"),
     r"Parser key \"data\.split\": Expected a typing\.Literal\['u1'.*Got value: u9\. See `python -m movielens_gnn"),
    ("misspelt_option", None, _fit("--model.hiden_dims", "[3]"),
     r"--model \(RatingModel\): Option 'hiden_dims' is not accepted\. See"),
    ("abbreviated_option", None, _on("test", "u1.ckpt", "--data.spl", "u2"),
     r"unrecognized arguments: --data\.spl u2\. See `python -m movielens_gnn test --help`"),  # abbreviations would hide options
    ("missing_config_file", None, ["fit", "--config", "nope.yaml"], r"Parser key \"config\": File does not exist: '.*work/nope\.yaml'\. See `python -m movielens_gnn"),
    ("config_not_yaml", lambda e: (e.work / "bad.yaml").write_text("model: [unclosed\n"), ["fit", "--config", "bad.yaml"],
     r"Problems parsing config: while parsing a flow sequence"),
    ("log_folder_is_a_file", lambda e: (e.work / "afile").write_text("x"),
     _fit("--trainer.logger.init_args.save_dir", "afile"), r"Cannot create the run folder under afile/gcn_dot: afile is a file"),
    ("gpu_without_cuda", lambda e: torch.cuda.is_available() and pytest.skip("a CUDA device is present"),
     _fit("--trainer.accelerator", "gpu"), r"--trainer\.accelerator gpu needs a CUDA device, and none is visible here"),
    # --- checkpoints
    ("checkpoint_missing", None, _on("test", "nothing.ckpt"), r"No checkpoint at nothing\.ckpt\. Pass a \.ckpt file"),
    ("checkpoint_is_a_folder", lambda e: (e.work / "ckdir").mkdir(), _on("test", "ckdir"),
     r"ckdir is a folder, not a checkpoint file\. Pass a \.ckpt file"),
    ("checkpoint_random_bytes", lambda e: (e.work / "r.ckpt").write_bytes(os.urandom(3000)), _on("test", "r.ckpt"),
     r"r\.ckpt is not a readable checkpoint \(not a torch file, or truncated: .*\)\. Pass a \.ckpt file"),
    ("checkpoint_text", lambda e: (e.work / "t.ckpt").write_text("hello\n"), _on("validate", "t.ckpt"),
     r"t\.ckpt is not a readable checkpoint"),
    ("checkpoint_truncated", lambda e: (e.work / "cut.ckpt").write_bytes((e.work / "u1.ckpt").read_bytes()[:4000]),
     _on("test", "cut.ckpt"), r"cut\.ckpt is not a readable checkpoint \(not a torch file, or truncated"),
    ("checkpoint_of_something_else", lambda e: torch.save({"weights": torch.zeros(2)}, e.work / "o.ckpt"),
     _on("predict", "o.ckpt"), r"o\.ckpt is a torch file but not a movielens_gnn checkpoint"),
    ("checkpoint_runs_code", _malicious_checkpoint, _on("test", "evil.ckpt"),
     r"Refused to load evil\.ckpt: it holds Python objects other than tensors and plain values \(.*system.*\)"),
    ("test_on_another_split", None, _on("test", "u2.ckpt"),
     r"The checkpoint u2\.ckpt was trained with split 'u2'; this run asks for split 'u1'\. .*--data\.allow_mismatch true"),
    ("predict_on_another_split", None, _on("predict", "u2.ckpt"), r"The checkpoint u2\.ckpt was trained with split 'u2'"),
    ("validate_with_another_seed", None, _on("validate", "u1.ckpt", "--data.seed", "7"),
     r"The checkpoint u1\.ckpt was trained with seed 42; this run asks for seed 7"),
    ("model_option_the_checkpoint_cannot_honour", None, _on("test", "u1.ckpt", "--model.hidden_dims", "[128]"),
     r"The checkpoint u1\.ckpt was trained with --model\.hidden_dims \[64\]; this run asks for --model\.hidden_dims "
     r"\[128\], which its weights cannot honour\. Drop those --model options from the command line or the --config "
     r"that sets them \(or leave the --config out"),
    ("checkpoint_of_other_ratings", None, _on("test", "u1.ckpt")[:3] + ["--data.root", "other", "--ckpt_path", "u1.ckpt"],
     r"The ratings under other are not those the checkpoint u1\.ckpt was trained on"),
    ("other_sizes_even_on_purpose", None,
     _on("test", "u1.ckpt")[:3] + ["--data.root", "wide", "--ckpt_path", "u1.ckpt", "--data.allow_mismatch", "true"],
     r"The checkpoint u1\.ckpt was trained for 24 users and 30 items; the ratings under wide hold 30 and 30\. "
     r"Point --data\.root to the data it was trained on\.$"),
    ("predictions_into_a_folder", lambda e: (e.work / "out").mkdir(), _on("predict", "u1.ckpt", "--predictions", "out"),
     r"--predictions out is a folder; expected a file path such as out/predictions\.csv"),
    ("predictions_not_csv", None, _on("predict", "u1.ckpt", "--predictions", "p.json"),
     r"--predictions p\.json: predict writes CSV; name the file \.csv \(p\.csv\)"),
    ("predictions_under_a_file", lambda e: (e.work / "afile").write_text("x"),
     _on("predict", "u1.ckpt", "--predictions", "afile/p.csv"), r"--predictions afile/p\.csv: afile is a file"),
    # --- recommend and describe
    ("recommend_random_checkpoint", lambda e: (e.work / "r.ckpt").write_bytes(os.urandom(3000)),
     ["recommend", "--ckpt_path", "r.ckpt", "--user", "1"], r"r\.ckpt is not a readable checkpoint"),
    ("recommend_code_checkpoint", _malicious_checkpoint, ["recommend", "--ckpt_path", "evil.ckpt", "--user", "1"],
     r"Refused to load evil\.ckpt"),
    ("recommend_unknown_user", None, ["recommend", "--ckpt_path", "u1.ckpt", "--user", "999", "--data.root", "data"],
     r"Unknown user id\(s\) \[999\]; this data has 24 users with ids 1\.\.24"),
    ("recommend_k_zero", None, ["recommend", "--ckpt_path", "u1.ckpt", "--user", "1", "--k", "0"],
     r"--k must be at least 1, got 0"),
    ("recommend_user_not_a_number", None, ["recommend", "--ckpt_path", "u1.ckpt", "--user", "abc"],
     r"--user takes user ids separated by commas \(1,2,3\), `all`, or @FILE of ids; got 'abc'"),
    ("recommend_bad_line_in_user_file", lambda e: (e.work / "ids.txt").write_text("1\n2\nfoo\n3\n"),
     ["recommend", "--ckpt_path", "u1.ckpt", "--user", "@ids.txt"],
     r"--user takes user ids separated by commas \(1,2,3\), `all`, or @FILE of ids; got 'foo' on line 3 of @ids\.txt\.$"),
    ("recommend_binary_user_file", None, ["recommend", "--ckpt_path", "u1.ckpt", "--user", "@u1.ckpt"],
     r"--user @u1\.ckpt is not a text file of user ids \(.*\); give a file with one id per line"),
    ("recommend_user_id_beyond_int64", None, ["recommend", "--ckpt_path", "u1.ckpt", "--user", "99999999999999999999"],
     r"--user takes user ids .*; got '99999999999999999999'\.$"),
    ("recommend_nan_rating", None, ["recommend", "--ckpt_path", "u1.ckpt", "--ratings", "5:nan"],
     r"--ratings: a rating must be a number on the data's scale, got '5:nan'\.$"),
    ("recommend_unknown_device", None, ["recommend", "--ckpt_path", "u1.ckpt", "--user", "1", "--device", "tpu"],
     r"--device takes cpu, cuda or cuda:N, got 'tpu'\.$"),
    ("recommend_age_out_of_range", None, ["recommend", "--ckpt_path", "u1.ckpt", "--ratings", "5:4", "--age",
                                          "99999999999999999999"],
     r"--age is the new user's age in years, 1\.\.120; got 99999999999999999999\.$"),
    ("recommend_without_user", None, ["recommend", "--ckpt_path", "u1.ckpt"],
     r"one of the arguments --user --ratings --new-user is required\. See `python -m movielens_gnn recommend --help`"),
    ("recommend_user_and_ratings", None, ["recommend", "--ckpt_path", "u1.ckpt", "--user", "1", "--ratings", "1:5"],
     r"argument --ratings: not allowed with argument --user"),
    ("recommend_ratings_malformed", None, ["recommend", "--ckpt_path", "u1.ckpt", "--ratings", "1=5"],
     r"--ratings takes movie:rating pairs separated by commas, e\.g\. 50:5,172:4 \(or movie ids, 50,172, for a "
     r"ranking checkpoint\); got '1=5'"),
    ("recommend_bare_ids_for_a_rating_checkpoint", None, ["recommend", "--ckpt_path", "u1.ckpt", "--ratings", "1,2"],
     r"--ratings 1 has no rating: a rating checkpoint fits the user to stars, so give movie:rating pairs, e\.g\. 1:5\."),
    ("recommend_ratings_off_scale", None, ["recommend", "--ckpt_path", "u1.ckpt", "--ratings", "1:9"],
     r"--ratings must be on the data's scale 1\.\.5; got \[9\.0\]"),
    ("recommend_user_file_missing", None, ["recommend", "--ckpt_path", "u1.ckpt", "--user", "@nowhere.txt"],
     r"--user @nowhere\.txt: cannot read the file of user ids"),
    ("recommend_output_is_a_folder", lambda e: (e.work / "out").mkdir(),
     ["recommend", "--ckpt_path", "u1.ckpt", "--user", "1", "--output", "out"], r"--output out is a folder"),
    ("export_into_a_full_folder", lambda e: (e.work / "full").mkdir() or (e.work / "full" / "x").write_text("x"),
     ["export", "--ckpt_path", "u1.ckpt", "--out", "full"], r"--out full exists and is not an empty folder"),
    ("unknown_dataset", None, _fit("--data.dataset", "ml-2m"),
     r"Unknown --data\.dataset 'ml-2m'; valid values: ml-100k, ml-1m, ml-10m, ml-20m, ml-25m, ml-32m"),
    ("canonical_split_on_ml1m", None, _fit("--data.dataset", "ml-1m"),
     r"--data\.split u1 is one of ml-100k's own split files; ml-1m has none\. Valid splits for ml-1m: random, temporal, ratio "
     r"\(configs/data/ml-1m\.yaml sets its usual one\)\.$"),
    ("csv_without_path", None, _fit("--data.dataset", "csv", "--data.split", "random"),
     r"--data\.dataset csv reads your own ratings file: pass --data\.path FILE"),
    ("csv_missing_column", lambda e: (e.work / "mine.csv").write_text("u,i,r\n1,2,3\n"),
     _fit("--data.dataset", "csv", "--data.split", "random", "--data.path", "mine.csv"),
     r"mine\.csv has no column 'user_id' \(--data\.columns\.user\); its header has 'u', 'i', 'r'"),
    ("split_leaves_parts_empty", lambda e: (e.work / "one.csv").write_text("user_id,item_id,rating\n1,2,3\n"),
     _fit("--data.dataset", "csv", "--data.split", "random", "--data.path", "one.csv"),
     r"--data\.split random left the validation and test parts of one\.csv empty \(1 / 0 / 0 training / validation / "
     r"test ratings\): a model cannot be trained and selected on that\. Give it more ratings"),
    ("recommend_unknown_format", None, ["recommend", "--ckpt_path", "u1.ckpt", "--user", "1", "--format", "xml"],
     r"argument --format: invalid choice: 'xml'"),
    ("recommend_on_other_ratings", None,
     ["recommend", "--ckpt_path", "u1.ckpt", "--user", "1", "--data.root", "other"],
     r"The ratings under other are not those the checkpoint u1\.ckpt was trained on .*--data\.allow_mismatch true "),
    ("describe_missing_logs", None, ["describe", "--data.root", "data", "--logs", "nowhere", "--plots", "plots"],
     r"No metrics\.csv under nowhere; pass a run's log folder or its metrics\.csv"),
    # A folder that exists but holds no metrics.csv: refused before any plot is written (the snapshot checks it).
    ("describe_logs_without_metrics", None, ["describe", "--data.root", "data", "--logs", "data", "--plots", "plots"],
     r"No metrics\.csv under data; pass a run's log folder or its metrics\.csv"),
    # A test run's log: metrics but no curve by epoch (it drew an empty "RMSE during training" plot).
    ("describe_logs_of_a_test_run",
     lambda e: ((e.work / "testlog").mkdir(), (e.work / "testlog" / "metrics.csv").write_text("test_rmse,test_mae\n0.91,0.72\n")),
     ["describe", "--data.root", "data", "--logs", "testlog", "--plots", "plots"],
     r"testlog/metrics\.csv holds no training curves \(train_rmse, val_rmse or val_ndcg@K by epoch\): it is not the log "
     r"of a fit .*Pass the log folder of a fit\.$"),
    ("describe_root_is_a_file", lambda e: (e.work / "afile").write_text("x"), ["describe", "--data.root", "afile"],
     r"--data\.root afile is a file"),
    ("describe_logs_without_plots", None, ["describe", "--data.root", "data", "--logs", "data"],
     r"--logs data is only used for plots; add --plots DIR"),
]


def snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> content hash for files, ``"dir"`` for folders; everything under ``folder``."""
    tree = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        tree[key] = "dir" if path.is_dir() else hashlib.sha1(path.read_bytes()).hexdigest()
    return tree


def test_there_are_at_least_30_cases():
    assert len(CASES) >= 30 and len({case[0] for case in CASES}) == len(CASES)


@pytest.mark.parametrize(("name", "setup", "argv", "message"), CASES, ids=[case[0] for case in CASES])
def test_bad_input_exits_2_with_one_message_and_changes_nothing(template, tmp_path, monkeypatch, capsys,
                                                                name, setup, argv, message):
    work = tmp_path / "work"
    shutil.copytree(template, work)  # copy2 keeps mtimes, so the caches stay valid
    monkeypatch.chdir(work)
    env = Env(work, monkeypatch)
    if setup is not None:
        setup(env)
    before = snapshot(work)
    capsys.readouterr()

    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))

    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    assert re.match(message, errors[0][len("error: "):]), errors[0]
    assert "Traceback" not in err
    expected = dict(before)
    for old, new in env.expected_changes.items():
        expected[new] = expected.pop(old)
    assert snapshot(work) == expected  # nothing new (no temp files, caches, run folders), nothing deleted
    assert not (work / MARKER).exists()
