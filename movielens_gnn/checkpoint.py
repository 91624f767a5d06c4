"""Reading checkpoints safely, and checking them against the data and settings they are used with.

A checkpoint file is untrusted input: it is a pickle, and unpickling arbitrary objects can run
code. Every checkpoint a user names is therefore read with ``torch.load(weights_only=True)``, which
only rebuilds tensors and plain containers; the project's own checkpoints need nothing more.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import struct
import zipfile
from pathlib import Path
from typing import Any, Iterable

import torch

from movielens_gnn.data.datamodule import MovieLensDataModule, split_identity
from movielens_gnn.data.datasets import CSVRatings

log = logging.getLogger(__name__)

# Where Lightning keeps the data module's state_dict() (and so the data fingerprint) in a checkpoint.
DATAMODULE_STATE_KEY = MovieLensDataModule.__qualname__
# Data-module arguments that are not about which data: never taken from a checkpoint.
RUN_ONLY_DATA_ARGUMENTS = ("predict_part", "cache", "allow_mismatch")
# What torch.load raises on bytes that are not a torch checkpoint; the set is open-ended, so it
# is listed here once (zip errors, truncated pickles, wrong magic numbers, bad storage records).
_UNREADABLE = (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, KeyError, AttributeError,
               TypeError, IndexError, struct.error, OverflowError, UnicodeDecodeError, zipfile.BadZipFile,
               ImportError)


class CheckpointError(ValueError):
    """A file named as a checkpoint cannot be used: unreadable, unsafe, not this project's, or
    trained on other data or settings than those asked for."""


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint written by ``fit`` without running any code stored in it.

    Args:
        path: The ``.ckpt`` file.

    Returns:
        The checkpoint dictionary (``state_dict``, ``hyper_parameters``, ...), tensors on the CPU.

    Raises:
        FileNotFoundError: Nothing at ``path``.
        CheckpointError: ``path`` is a folder, unreadable, not a torch checkpoint, holds Python
            objects beyond tensors and plain values (refused: loading them could run code), or is
            not a checkpoint of this project.
    """
    path = Path(path)
    hint = "Pass a .ckpt file written by `fit` (under checkpoints/<config>/version_N/)."
    if not path.exists():
        raise FileNotFoundError(f"No checkpoint at {path}. {hint}")
    if path.is_dir():
        found = sorted(p.name for p in path.glob("*.ckpt"))[:3]
        inside = f" It holds {', '.join(found)}." if found else ""
        raise CheckpointError(f"{path} is a folder, not a checkpoint file.{inside} {hint}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError as err:
        raise CheckpointError(f"Cannot read the checkpoint {path}: {err.strerror}. Check its permissions.") from err
    except pickle.UnpicklingError as err:
        refused = _unsupported_global(str(err))
        if refused:
            raise CheckpointError(
                f"Refused to load {path}: it holds Python objects other than tensors and plain values "
                f"({refused}), and loading those could run code. Only checkpoints written by this "
                f"project's `fit` are accepted. {hint}"
            ) from err
        raise CheckpointError(f"{path} is not a readable checkpoint (not a torch file, or truncated: "
                              f"{_weights_unpickler_reason(str(err))}). {hint}") from err
    except _UNREADABLE + (OSError,) as err:
        raise CheckpointError(f"{path} is not a readable checkpoint (not a torch file, or truncated: "
                              f"{type(err).__name__}: {_first_line(err)}). {hint}") from err
    hparams = state.get("hyper_parameters") if isinstance(state, dict) else None
    if not isinstance(state, dict) or not isinstance(state.get("state_dict"), dict) or not isinstance(hparams, dict) \
            or not {"num_users", "num_items"} <= hparams.keys() \
            or not isinstance(state.get("datamodule_hyper_parameters") or {}, dict):
        raise CheckpointError(f"{path} is a torch file but not a movielens_gnn checkpoint (it lacks the model's "
                              f"state_dict or hyper_parameters). {hint}")
    return state


def _first_sentence(line: str, limit: int = 200) -> str:
    """``line``'s first sentence, without its full stop, cut at a word (with "…") if still over ``limit``:
    torch's messages go on with advice that does not apply here (to allowlist a global, say)."""
    # A full stop ends a sentence where a capital follows ("directory. This is"), not in "e.g. x" or a path.
    sentence = re.split(r"(?<=\.)\s+(?=[A-Z])", line.strip(), maxsplit=1)[0].rstrip(".") or line.strip()
    if len(sentence) <= limit:
        return sentence
    return sentence[:limit].rsplit(" ", 1)[0] + "…"


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return _first_sentence(text[0]) if text else type(err).__name__


def _unsupported_global(message: str) -> str | None:
    """The sentence of torch's weights-only refusal that names a Python global (``GLOBAL posix.system``),
    or ``None`` when the refusal is about malformed bytes rather than a global."""
    for line in message.splitlines():
        line = line.partition("WeightsUnpickler error:")[2] or line  # torch < 2.4 says it all on one line
        if any(mark in line for mark in ("GLOBAL", "Unsupported global", "Unsupported class")):
            return _first_sentence(line, 160)
    return None


def _weights_unpickler_reason(message: str) -> str:
    """The short reason in torch's long weights-only error (e.g. ``Unsupported operand 110``)."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for index, line in enumerate(lines):
        if "WeightsUnpickler error" in line:
            rest = line.partition("WeightsUnpickler error")[2].strip(" :") or (
                lines[index + 1] if index + 1 < len(lines) else "")
            return _first_sentence(rest, 160)
    return _first_sentence(lines[0], 160) if lines else "unpickling failed"


def trained_data_settings(checkpoint: dict) -> dict:
    """The data-module arguments the checkpoint was trained with (empty for very old checkpoints).

    Paths are stored absolute; where one no longer exists (the checkpoint was taken to another machine or
    clone) and the relative path it was typed as exists from here, that one is used.
    """
    stored = dict(checkpoint.get("datamodule_hyper_parameters") or {})
    settings = {k: v for k, v in stored.items() if not k.startswith("_")}
    typed = stored.get("_typed_paths")
    for name, value in (typed.items() if isinstance(typed, dict) else ()):
        if isinstance(settings.get(name), str) and not os.path.exists(settings[name]) and os.path.exists(value):
            settings[name] = value
    return settings


def trained_fingerprint(checkpoint: dict) -> str | None:
    """The data fingerprint stored at training time, if the checkpoint has one."""
    state = checkpoint.get(DATAMODULE_STATE_KEY)
    return state.get("data_fingerprint") if isinstance(state, dict) else None


def data_source(datamodule: MovieLensDataModule) -> tuple[str, str]:
    """How messages name the ratings a data module reads, and the option that points at other ones:
    your own file by its path (``--data.path``), a MovieLens dataset by its folder (``--data.root``)."""
    dataset = datamodule.dataset
    if isinstance(dataset, CSVRatings):
        return f"the ratings in {dataset.path}", "--data.path"
    return f"the ratings under {dataset.root}", "--data.root"


def check_fingerprint(checkpoint: dict, datamodule: MovieLensDataModule, path: str | Path, allow_mismatch: bool) -> None:
    """Refuse data whose ratings differ from those the checkpoint was trained on (same settings, other files).

    Raises:
        CheckpointError: The fingerprints differ and ``allow_mismatch`` is off (with it: a warning).
    """
    expected = trained_fingerprint(checkpoint)
    if expected is None:
        log.warning("The checkpoint %s predates data fingerprints; the data it was trained on cannot be verified.", path)
        return
    if datamodule.fingerprint == expected:
        return
    source, option = data_source(datamodule)
    message = (f"{source[0].upper()}{source[1:]} are not those the checkpoint {path} was trained on "
               f"(data fingerprint {datamodule.fingerprint[:12]}, checkpoint {expected[:12]}).")
    if allow_mismatch:
        log.warning("%s Going on: --data.allow_mismatch is set.", message)
        return
    raise CheckpointError(f"{message} Point {option} to the data it was trained on, or pass "
                          "--data.allow_mismatch true to use this data on purpose.")


def identity_differences(trained: dict, requested: dict) -> list[tuple[str, Any, Any]]:
    """``(setting, trained value, requested value)`` for each split setting that differs."""
    a, b = split_identity(trained), split_identity(requested)
    return [(key, a.get(key), b.get(key)) for key in sorted(a.keys() | b.keys()) if a.get(key) != b.get(key)]


def describe_differences(differences: Iterable[tuple[str, Any, Any]], prefix: str) -> tuple[str, str]:
    """``("split u2, seed 1", "split u1, seed 42")`` for messages."""
    differences = list(differences)

    def side(values: list[tuple[str, Any]]) -> str:
        # A setting this side does not have (test_fraction of a canonical split) is left out where other
        # settings say what differs, and shown as unset where it is the difference itself.
        shown = [(key, value) for key, value in values if value is not None] or values
        return ", ".join(f"{prefix}{key} {'unset' if value is None else repr(value)}" for key, value in shown)

    return side([(key, value) for key, value, _ in differences]), side([(key, value) for key, _, value in differences])
