"""Command line: ``movielens-gnn {fit,validate,test,predict,recommend,describe,export} ...`` (or
``python -m movielens_gnn ...``); ``movielens-gnn --help`` lists the commands.

Every user-caused failure (bad data, files, settings, permissions, checkpoints) ends the process
with exit code 2 and one ``error:`` line on stderr that names what was expected, what was given
and what to do; ``MOVIELENS_GNN_DEBUG=1`` shows the traceback instead. Unexpected errors (bugs)
keep their traceback.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import logging
import os
import re
import shlex
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import Any, Literal, Sequence

import torch
from torch import Tensor
import yaml
from jsonargparse import ArgumentError, Namespace
from lightning_fabric.plugins import CheckpointIO
from lightning_fabric.utilities.exceptions import MisconfigurationException
from lightning_fabric.utilities.rank_zero import rank_zero_only
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.callbacks.progress.progress_bar import ProgressBar
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.utilities.exceptions import SIGTERMException

from movielens_gnn import __version__
from movielens_gnn.checkpoint import (
    RUN_ONLY_DATA_ARGUMENTS, CheckpointError, check_fingerprint, data_source, describe_differences, identity_differences,
    load_checkpoint, trained_data_settings,
)
from movielens_gnn.data.datamodule import MovieLensDataModule, normalise
from movielens_gnn.files import atomic_write, check_output_file, created_dirs
from movielens_gnn.progress import EpochLines
from movielens_gnn.tasks import DEFAULT_TASK, GraphTask, task_class
from movielens_gnn.tasks.base import EVALUATION_ARGUMENTS, plateau_mode_message
from movielens_gnn.runs import (AtomicCheckpointIO, ResumeHint, claim_run_folders, default_checkpoints, is_wandb,
                                newest_run_checkpoint, quiet_wandb_start, remove_if_empty, run_config, WANDB_CONFIG,
                                wandb_run_folder)

log = logging.getLogger("movielens_gnn")

# Commands beside LightningCLI's fit/validate/test/predict: name -> module with main(argv), imported when used.
EXTRA_COMMANDS = {"recommend": "movielens_gnn.recommend", "describe": "movielens_gnn.describe",
                  "export": "movielens_gnn.export", "search": "movielens_gnn.search"}
LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
# Every command, one line each: what `movielens-gnn --help` lists.
COMMANDS = {
    "fit": "train a model: --config configs/<name>.yaml; checkpoints go to checkpoints/<config>/version_N/",
    "validate": "score a checkpoint on the validation part (--ckpt_path)",
    "test": "score a checkpoint once on the test part (--ckpt_path); fit prints the exact command",
    "predict": "write a checkpoint's predictions (or ranking scores) for the test pairs (validation: --predict_part val) to CSV",
    "recommend": "top-K unseen movies for users (--user 42, 1,2,3 or all; --output FILE) or for a new user "
                 "(--ratings 50:5,172:4 and/or --age, --gender, --occupation)",
    "describe": "what is in a dataset: counts, rating distribution, degrees, the split (--format json, --plots)",
    "export": "a checkpoint's user and item embeddings (.npy), id maps and titles (CSV) for serving",
    "search": "hyperparameter search with Optuna, pruned on the validation metric (pip install -e \".[search]\")",
}

# Sizes known only from the data flow into the model once the data module exists.
LINKED_FROM_DATA = ("num_users", "num_items", "user_feature_dim", "item_feature_dim", "rating_mean", "rating_values")
# ckpt_path values Lightning resolves itself within a run (no file to check).
SPECIAL_CKPT_PATHS = ("best", "last", "hpc", "registry")

# Exceptions that mean the user's input or environment is wrong; anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, OSError, ImportError, ArgumentError, MisconfigurationException)
EXIT_USER_ERROR, EXIT_INTERRUPTED, EXIT_TERMINATED = 2, 130, 143


def _gather_shards(columns: tuple[Tensor, ...], world_size: int) -> tuple[Tensor, ...]:
    """Every rank's strided shard of a part (rank ``r`` holds edges ``r, r + W, ...``, see ``EdgeLoader``)
    put back in the part's order, on every rank, through the process group the Trainer ran in."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        raise RuntimeError(
            f"predict ran on {world_size} processes but this process has no process group to collect their "
            "predictions (a spawned strategy such as ddp_spawn returns none to the main process). Use "
            "--trainer.strategy ddp, or one device (--trainer.devices 1).")
    shards: list = [None] * world_size
    torch.distributed.all_gather_object(shards, [column.cpu() for column in columns])
    total = sum(len(shard[0]) for shard in shards)
    merged = []
    for index, column in enumerate(columns):
        out = torch.empty(total, dtype=column.dtype)
        for rank, shard in enumerate(shards):
            out[rank::world_size] = shard[index]
        merged.append(out)
    return tuple(merged)


class Terminated(BaseException):
    """SIGTERM outside a Trainer run (reading data, say): unwinds so temporary files are removed."""


class RunConfig(SaveConfigCallback):
    """LightningCLI's ``config.yaml``, and for a Weights & Biases run a copy in the run's own folder
    (:data:`runs.WANDB_CONFIG`).

    Lightning writes ``config.yaml`` into ``trainer.log_dir``, which for a ``WandbLogger`` is the shared
    ``save_dir`` (``logs/``): each W&B run would overwrite the one before. The copy in the run's files
    folder (``logs/wandb/<run>/files``, uploaded with the run) is the one the printed ``test`` and resume
    commands name (:func:`runs.run_config`).
    """

    def save_config(self, trainer: Any, pl_module: Any, stage: str) -> None:
        folder = wandb_run_folder(trainer.logger)  # rank 0 only: the hook runs there
        if folder is not None:
            self.parser.save(self.config, str(folder / WANDB_CONFIG), skip_none=False, overwrite=True,
                             multifile=self.multifile)


PROG = "python -m movielens_gnn"


class NamedParser(LightningArgumentParser):
    """Lightning's parser, named :data:`PROG` where jsonargparse builds one without a name: the page of
    ``--model.help CLASS`` would otherwise start ``usage: __main__.py``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("prog", PROG)
        super().__init__(*args, **kwargs)


class MovieLensCLI(LightningCLI):
    """LightningCLI with the data-derived model arguments linked from the data module, and checks.

    With ``--ckpt_path``, the checkpoint is read safely (weights only) before anything else, the
    model is rebuilt with its hyperparameters and the data with its data settings. Options given
    on the command line or in ``--config`` files that differ from the checkpoint's are refused:
    model options it cannot honour always, data settings unless ``--data.allow_mismatch true``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._subcommands = kwargs.get("run", True)  # LightningCLI's parser has subcommands only when it runs one
        self.checkpoint: dict | None = None
        self.run_folders: list[Path] = []
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        for name in LINKED_FROM_DATA:
            parser.link_arguments(f"data.{name}", f"model.init_args.{name}", apply_on="instantiate")
        parser.add_argument("--predict_part", type=Literal["test", "val"], default="test",
                            help="predict: the split part to predict (test or val)")
        parser.link_arguments("predict_part", "data.predict_part")
        parser.add_argument("--predictions", type=str, default="predictions.csv",
                            help="predict: CSV to write (user_id,item_id,rating,prediction - or score for a ranking model -, MovieLens ids)")

    # ------------------------------------------------------------------- checks before work
    def parse_arguments(self, parser, args) -> None:
        if args is None:
            args = sys.argv[1:]
        subcommand = _subcommand_of(args)
        explicit = explicit_keys(args, subcommand)
        linked = [name for name in LINKED_FROM_DATA if name in explicit["model"]]
        if linked:  # the link would silently replace the value given
            scale = (" The rating scale is the dataset's own (for your ratings file: the distinct ratings in it; fix "
                     "or remove the lines with other values).") if linked[0] == "rating_values" else ""
            raise ValueError(f"--model.{linked[0]} is read from the data, which sizes the model, and cannot be set: "
                             f"drop it.{scale}")
        if "class_path" not in explicit["model"] and (subcommand or not self._subcommands):
            # No task named: the rating task, so configs written before the ranking task still work. Given
            # as if typed first, not as a parser default: a default class would pass its own defaults on
            # to a task named in a config (jsonargparse carries same-named values over).
            args = _with_task(args, subcommand, DEFAULT_TASK)
        # As LightningCLI.parse_arguments, without its warning about args beside sys.argv (set just above).
        self.config = parser.parse_object(args) if isinstance(args, (dict, Namespace)) else parser.parse_args(args)
        if not subcommand:
            return
        config = self.config[subcommand]
        if "weights_only" in config and config.get("weights_only") is None:
            config["weights_only"] = True  # torch < 2.6 would otherwise unpickle anything
        ckpt_path = config.get("ckpt_path")
        if (subcommand in EVALUATION_COMMANDS and not ckpt_path) or str(ckpt_path) in ("last", "best"):
            config["ckpt_path"] = ckpt_path = resolve_ckpt_path(subcommand, ckpt_path, checkpoint_roots(config))
        if ckpt_path and str(ckpt_path) not in SPECIAL_CKPT_PATHS:
            self.checkpoint = load_checkpoint(ckpt_path)
            if subcommand == "fit" and "optimizer_states" not in self.checkpoint:
                raise CheckpointError(weights_only_resume_message(Path(ckpt_path)))
            if subcommand == "fit":
                check_epochs_left(self.checkpoint, _as_dict(config.get("trainer")).get("max_epochs"), ckpt_path)
            with_config = isinstance(args, list) and any(a == "--config" or str(a).startswith("--config=") for a in args)
            self._apply_checkpoint(subcommand, explicit, with_config)

    def _parse_ckpt_path(self) -> None:
        """Replaced by :meth:`_apply_checkpoint` (Lightning's silently overrides options given by the user)."""

    def _apply_checkpoint(self, subcommand: str, explicit: dict[str, set[str]], with_config: bool = False) -> None:
        """Rebuild the model and data as the checkpoint was trained, refusing conflicting options
        (``with_config``: a ``--config`` was given, whose model options may be another task's)."""
        config, checkpoint = self.config[subcommand], self.checkpoint
        path = config["ckpt_path"]
        trained_task = task_class(checkpoint["hyper_parameters"].get("_class_path"))
        requested_task = task_class(config["model"]["class_path"])
        switched = trained_task is not requested_task
        if switched:
            if "class_path" in explicit["model"]:
                raise CheckpointError(
                    f"The checkpoint {path} holds a {trained_task.__name__}; this run asks for a "
                    f"{requested_task.__name__}. Drop --model (and class_path in --config files): the task is "
                    "taken from the checkpoint.")
            self.config = self.parser.parse_object(
                {subcommand: {"model": {"class_path": _class_path(trained_task)}}}, self.config)
            config = self.config[subcommand]
        model_config = config["model"]["init_args"]
        hparams = {k: v for k, v in checkpoint["hyper_parameters"].items() if not k.startswith("_") and k in model_config}
        conflicts = [(key, value, model_config[key]) for key, value in hparams.items()
                     if key in explicit["model"] and key not in EVALUATION_ARGUMENTS
                     and normalise(model_config[key]) != normalise(value)]
        if conflicts and switched and with_config:  # a config for the other task, not a choice against these weights
            raise CheckpointError(
                f"The checkpoint {path} holds a {trained_task.__name__}; the --model options given (from "
                f"{', '.join('--model.' + key for key, _, _ in conflicts[:3])}{' ...' if len(conflicts) > 3 else ''}) "
                f"are those of a {requested_task.__name__}. Leave out the --config (the checkpoint's own settings are "
                f"used) or give the config it was trained with.")
        if conflicts:
            trained, requested = describe_differences(conflicts, "--model.")
            where = (" from the command line or the --config that sets them (or leave the --config out: the "
                     "checkpoint's own settings are then used)") if with_config else ""
            raise CheckpointError(
                f"The checkpoint {path} was trained with {trained}; this run asks for {requested}, which its weights "
                f"cannot honour. Drop those --model options{where} (the model is rebuilt from the checkpoint), or "
                "train a new model with them."
            )
        model_update = {k: v for k, v in hparams.items() if not (k in explicit["model"] and k in EVALUATION_ARGUMENTS)}

        trained = trained_data_settings(checkpoint)
        requested = _as_dict(config["data"])
        merged = dict(requested)
        for key, value in trained.items():
            if key in requested and key not in RUN_ONLY_DATA_ARGUMENTS and key not in explicit["data"]:
                merged[key] = value
        if merged.get("dataset") != "csv":  # another dataset asked for: the checkpoint's own file is not this data's
            merged.update({key: requested.get(key) for key in ("path", "items_path") if key not in explicit["data"]})
        differences = identity_differences(trained, merged) if trained else []
        if differences and not merged.get("allow_mismatch"):
            was, asks = describe_differences(differences, "")
            raise CheckpointError(
                f"The checkpoint {path} was trained with {was}; this run asks for {asks}. "
                + ("Resuming it on other data would go on training it on other ratings than it started with. " if subcommand
                   == "fit" else "Evaluating it on other data than its own can score it on ratings it trained on. ")
                + "Drop those --data options (from the command line or --config files; or use the run's config.yaml) "
                "to use the checkpoint's settings, or pass --data.allow_mismatch true to use these on purpose."
            )
        if differences:
            log.warning("--data.allow_mismatch: using %s although the checkpoint was trained with %s",
                        *reversed(describe_differences(differences, "")))
        if not trained:
            log.warning("The checkpoint %s does not record its data settings; they cannot be checked.", path)
        data_update = {k: v for k, v in merged.items() if requested.get(k) != v}
        self.config = self.parser.parse_object(
            {subcommand: {"model": {"class_path": _class_path(trained_task), "init_args": model_update},
                          "data": data_update}}, self.config)

    def instantiate_classes(self) -> None:
        """LightningCLI's, with a hint where the data is missing under a --data.root (a config's, say) other
        than the one the checkpoint was trained on: the data is read here, for the sizes the model needs."""
        try:
            super().instantiate_classes()
        except FileNotFoundError as err:
            hint = self._trained_root_hint()
            if hint is None:
                raise
            raise FileNotFoundError(f"{str(err).rstrip('.')}. {hint}") from err

    def _trained_root_hint(self) -> str | None:
        """Where the checkpoint's data was, when this run reads another folder; ``None`` otherwise."""
        if self.checkpoint is None or not self.subcommand:
            return None
        data = self.config[self.subcommand]["data"]
        # Your own file is found by its path (a run's config.yaml holds it as typed, relative to where fit ran).
        key, where = ("path", "the ratings file") if data.get("dataset") == "csv" else ("root", "the data under")
        trained = trained_data_settings(self.checkpoint).get(key)
        given = data.get(key)
        if not trained or given is None or Path(given).resolve() == Path(trained).resolve():
            return None
        return (f"The checkpoint was trained on {where} {trained}: pass --data.{key} {shlex.quote(str(trained))}, "
                "or leave --config out to take the checkpoint's own settings.")

    def before_instantiate_classes(self) -> None:
        """Check model, trainer and output settings before any data is read or written."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        model = _as_dict(config["model"])
        task = task_class(model.get("class_path"))
        task.check_arguments(**{k: v for k, v in (model.get("init_args") or {}).items() if k not in LINKED_FROM_DATA})
        check_optimizer_arguments(_as_dict((model.get("init_args") or {}).get("optimizer")))
        check_plateau_mode(_as_dict((model.get("init_args") or {}).get("lr_scheduler")), task)
        check_trainer_arguments(_as_dict(config["trainer"]))
        if self.subcommand == "fit":  # test may ask for other cut-offs: its callbacks select nothing
            check_monitored_cutoffs((model.get("init_args") or {}).get("ranking_ks"), _as_dict(config["trainer"]))
        if self.subcommand == "predict":
            predictions = Path(config["predictions"])
            check_output_file(predictions, "--predictions")
            if predictions.suffix.lower() != ".csv":
                raise ValueError(f"--predictions {predictions}: predict writes CSV; name the file .csv "
                                 f"({predictions.with_suffix('.csv').name}).")

    def instantiate_trainer(self, **kwargs: Any):
        """The configured Trainer, with checkpoints written atomically (unless a CheckpointIO is configured)
        and one progress line per interval (:class:`EpochLines`) unless the progress bar is turned off or
        another one is configured.

        What a config leaves out is filled in as the configs do it, not as Lightning would: a CSV logger
        in ``logs/<task's run_name>`` (Lightning: ``lightning_logs/``, TensorBoard where installed), a log
        row every step (Lightning's 50 warns on short epochs; the tasks log once an epoch anyway), and for
        ``fit`` the best and last checkpoints in ``checkpoints/<run_name>`` (:func:`default_checkpoints`;
        Lightning: the latest epoch only). Both folders are under ``--trainer.default_root_dir`` when it is
        set. Without a subcommand (``main(run=False)``) only the logger and the logging cadence are filled in.
        """
        trainer_config = self._get(self.config_init, "trainer", default={})
        plugins = trainer_config.get("plugins")
        plugins = [] if plugins is None else list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        if not any(isinstance(plugin, CheckpointIO) for plugin in plugins):
            plugins.append(AtomicCheckpointIO())
        configured = trainer_config.get("callbacks") or []
        configured = list(configured) if isinstance(configured, (list, tuple)) else [configured]
        callbacks = list(configured)
        given = callbacks + list(self.trainer_defaults.get("callbacks") or [])  # and those main() was given
        model = self.model
        root = Path(trainer_config.get("default_root_dir") or ".")
        if trainer_config.get("logger") in (None, True):
            kwargs["logger"] = CSVLogger(save_dir=str(root / "logs"), name=model.run_name)
        if trainer_config.get("log_every_n_steps") is None:
            kwargs["log_every_n_steps"] = 1
        if (self.subcommand == "fit" and trainer_config.get("enable_checkpointing") is not False
                and not any(isinstance(c, ModelCheckpoint) for c in given)):
            callbacks += default_checkpoints(root / "checkpoints" / model.run_name, model.monitor, model.monitor_mode)
        if trainer_config.get("enable_progress_bar") is not False and not any(isinstance(c, ProgressBar) for c in callbacks):
            callbacks.append(EpochLines())
        if callbacks != configured:
            kwargs["callbacks"] = callbacks  # replaces the configured list: it is kept at its head
        return super().instantiate_trainer(plugins=plugins, **kwargs)

    def _check_checkpoint_data(self) -> None:
        """Refuse a checkpoint trained on other ratings than this data module's (same settings, other files)."""
        if self.checkpoint is None:
            return
        path = self.config[self.subcommand]["ckpt_path"]
        datamodule = self.datamodule
        hparams = self.checkpoint["hyper_parameters"]
        sizes = (hparams["num_users"], hparams["num_items"])
        if sizes != (datamodule.num_users, datamodule.num_items):  # even on purpose: the weights cannot fit
            source, option = data_source(datamodule)
            raise CheckpointError(
                f"The checkpoint {path} was trained for {sizes[0]} users and {sizes[1]} items; {source} hold "
                f"{datamodule.num_users} and {datamodule.num_items}. Point {option} to the data it was trained on.")
        check_fingerprint(self.checkpoint, datamodule, path, datamodule.allow_mismatch)

    # ----------------------------------------------------------------------------- running
    def _run_subcommand(self, subcommand: str) -> None:
        self._check_checkpoint_data()
        # Before the launcher starts other ranks every process thinks it is rank 0; the environment
        # (RANK/LOCAL_RANK, NODE_RANK) says which one really is.
        trainer = self.trainer
        if trainer.is_global_zero and rank_zero_only.rank == 0 and trainer.node_rank == 0:
            ckpt_path = self.config[subcommand].get("ckpt_path")
            resume_from = Path(ckpt_path) if self.checkpoint is not None and subcommand == "fit" else None
            self.run_folders = claim_run_folders(trainer, resume_from, checkpoints=subcommand == "fit")
            quiet_wandb_start(trainer.logger)
        try:
            super()._run_subcommand(subcommand)
        finally:
            remove_if_empty(self.run_folders)
            _finish_wandb_run(trainer.logger)

    def after_predict(self) -> None:
        import pandas as pd  # here, not at start-up: 0.3 s that fit and test never need
        trainer, datamodule = self.trainer, self.datamodule
        predictions = torch.cat(trainer.predict_loop.predictions).cpu()
        batches = list(datamodule.predict_dataloader())  # same order as the predictions
        users = torch.cat([b.users for b in batches])
        items = torch.cat([b.items for b in batches])
        ratings = torch.cat([b.ratings for b in batches])
        path = Path(self.config[self.subcommand]["predictions"])
        if trainer.world_size > 1:  # each rank predicted its own shard of the edges: one file, on rank 0
            users, items, ratings, predictions = _gather_shards((users, items, ratings, predictions), trainer.world_size)
            if not trainer.is_global_zero:
                return
        frame = pd.DataFrame({
            "user_id": datamodule.data.user_ids[users].numpy(),
            "item_id": datamodule.data.item_ids[items].numpy(),
            "rating": ratings.numpy(),
            # Stars from a rating model; from a ranking model only an order (higher first).
            "prediction" if self.model.predicts_ratings else "score": predictions.numpy(),
        })
        with created_dirs(path.parent), atomic_write(path, "w", encoding="utf-8", newline="") as handle:
            frame.to_csv(handle, index=False, float_format="%.4f")
        log.info("Wrote %d predictions for the %s part to %s", len(predictions), datamodule.predict_part, path)

    def after_fit(self) -> None:
        checkpoint = self.trainer.checkpoint_callback
        best = getattr(checkpoint, "best_model_path", "")
        if best and self.trainer.is_global_zero:
            score = checkpoint.best_model_score
            if score is None:  # a ModelCheckpoint without a monitor keeps the latest
                log.info("Checkpoint: %s", best)
            else:
                log.info("Best checkpoint: %s (%s=%.4f)", best, checkpoint.monitor, float(score))
            config = run_config(self.trainer)
            options = f"--config {shlex.quote(str(config))}" if config else "--config <same config and options>"
            log.info("Evaluate it once on the test part with: python -m movielens_gnn test %s --ckpt_path %s", options,
                     shlex.quote(best))
            self._log_sample_recommendations(best)

    def _log_sample_recommendations(self, checkpoint: str, users: int = 3, k: int = 10) -> None:
        """On Weights & Biases runs, a table of the best checkpoint's top-k for the first users."""
        logger = self.trainer.logger
        if not is_wandb(logger):
            return
        from movielens_gnn.recommend import load_model, recommend

        datamodule = self.datamodule
        model = load_model(load_checkpoint(checkpoint), datamodule.graph.cpu())
        user_ids = datamodule.data.user_ids[:users].tolist()
        logger.log_table(key="sample_recommendations", dataframe=recommend(model, datamodule, user_ids, k))


EVALUATION_COMMANDS = ("validate", "test", "predict")


def check_epochs_left(checkpoint: dict, max_epochs: int | None, path: Any) -> None:
    """Refuse to resume a run that has already trained ``max_epochs`` epochs: it would train nothing (or stop
    with Lightning's error once more were done), after taking a new log folder."""
    progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {}).get("current", {})
    done = int(progress.get("processed", checkpoint.get("epoch", -1) + 1))
    if max_epochs is not None and max_epochs >= 0 and done >= max_epochs:
        raise CheckpointError(f"The checkpoint {path} has trained {done} epochs already, and --trainer.max_epochs is "
                              f"{max_epochs}: resuming would train nothing. Raise --trainer.max_epochs above {done} to "
                              "go on training.")


def checkpoint_roots(config: Any) -> list[Path]:
    """The folders a command's checkpoint callbacks save under (``checkpoints/<config>``, without
    ``version_N``), from its parsed config; ``checkpoints/<task>`` when it names none, as in ``fit``."""
    trainer = _as_dict(config.get("trainer"))
    roots = []
    for callback in configured_callbacks(trainer):
        module, _, name = str(callback.get("class_path", "")).rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError, ValueError):
            continue
        dirpath = _as_dict(callback.get("init_args")).get("dirpath")
        if isinstance(cls, type) and issubclass(cls, ModelCheckpoint) and dirpath:
            roots.append(Path(str(dirpath)))
    if not roots:
        task = task_class(_as_dict(config.get("model")).get("class_path"))
        roots = [Path(trainer.get("default_root_dir") or ".") / "checkpoints" / task.run_name]
    return list(dict.fromkeys(roots))


def resolve_ckpt_path(subcommand: str, ckpt_path: Any, roots: list[Path]) -> Any:
    """The file ``--ckpt_path`` names: ``last`` and ``best`` mean the newest run's (:func:`newest_run_checkpoint`;
    Lightning's own lookup sees only this process's run, which has none yet, and would go on untrained).
    Evaluation commands need one: without it they would score random weights."""
    where = " or ".join(str(root) for root in roots)
    if not ckpt_path:  # validate, test, predict (an empty --ckpt_path "$UNSET" too)
        best, found = newest_run_checkpoint(roots, "best")
        last, _ = newest_run_checkpoint(roots, "last")
        newest = (f" The newest run under {where} has {shlex.quote(str(best or found[0] if found else last))}; "
                  "--ckpt_path best or last picks its best or last checkpoint.") if found or last else (
                  f" No run under {where} has one yet: train with fit first.")
        raise CheckpointError(f"{subcommand} scores a trained model and needs --ckpt_path, the checkpoint to score (fit "
                              f"prints the test command with it); without one the weights would be random.{newest}")
    which = str(ckpt_path)
    if subcommand == "fit" and which == "best":
        raise CheckpointError("fit --ckpt_path best: best checkpoints keep the weights only; a run resumes from its "
                              "whole state in last.ckpt. Use --ckpt_path last (the newest run's) or name the file.")
    if which not in ("last", "best"):
        return ckpt_path
    path, found = newest_run_checkpoint(roots, which)
    if path is None and found:
        listed = ", ".join(p.name for p in found)
        raise CheckpointError(f"--ckpt_path best: the newest run, {found[0].parent}, has several checkpoints "
                              f"({listed}); name the one to use.")
    if path is None:
        raise CheckpointError(f"--ckpt_path {which}: no run under {where} has a{' last' if which == 'last' else ''} "
                              f"checkpoint. " + ("Drop --ckpt_path to start a new run." if subcommand == "fit" else
                                                 "Train with fit first, or name the checkpoint file."))
    log.info("--ckpt_path %s: %s (of the newest run that has one)", which, path)
    return str(path)


def weights_only_resume_message(path: Path) -> str:
    """Why ``fit --ckpt_path`` cannot resume from a weights-only checkpoint, and which file can."""
    last = path.with_name("last.ckpt")
    where = (f"the same run's {last}" if last.is_file() and last != path
             else "the run's last.ckpt (beside its best checkpoint)")
    return (f"The checkpoint {path} holds the model's weights only (the configs save best checkpoints so, for "
            f"test, predict and recommend); fit --ckpt_path resumes a run and needs its whole state, optimizer "
            f"included. Resume from {where}.")


def _subcommand_index(args: list) -> int | None:
    """Where the Lightning subcommand stands in ``args``: first, or after top-level ``-c FILE`` options."""
    index = 0
    while index < len(args):
        if args[index] in LIGHTNING_COMMANDS:
            return index
        if args[index] not in ("-c", "--config") and not str(args[index]).startswith(("-c=", "--config=")):
            return None
        index += 1 if "=" in str(args[index]) else 2
    return None


def _subcommand_of(args: Any) -> str | None:
    """The Lightning subcommand ``args`` (a list or a mapping) runs, if any."""
    if isinstance(args, (dict, Namespace)):
        return next((c for c in LIGHTNING_COMMANDS if c in args), None)
    index = _subcommand_index(list(args))
    return None if index is None else args[index]


def _with_task(args: Any, subcommand: str | None, task: type) -> Any:
    """``args`` with ``task`` as the model class, set before any other option."""
    if isinstance(args, (dict, Namespace)):
        args = _as_dict(args)
        section = _as_dict(args.get(subcommand)) if subcommand else args
        model = _as_dict(section.get("model"))
        init_args = {**{k: v for k, v in model.items() if k != "init_args"}, **_as_dict(model.get("init_args"))}
        section = {**section, "model": {"class_path": _class_path(task), "init_args": init_args}}
        return {**args, subcommand: section} if subcommand else section
    at = _subcommand_index(list(args)) + 1 if subcommand else 0
    return [*args[:at], "--model", _class_path(task), *args[at:]]


def _finish_wandb_run(logger: Any) -> None:
    """End this command's Weights & Biases run (Lightning leaves it open), so a next command in the same
    process (a benchmark, a notebook) starts its own run instead of logging into this one."""
    if is_wandb(logger) and getattr(logger, "_experiment", None) is not None:
        logger.experiment.finish()


def _class_path(task: type) -> str:
    return f"{task.__module__}.{task.__name__}"


def _as_dict(value: Any) -> dict:
    if isinstance(value, Namespace):
        return value.as_dict()
    return dict(value or {})


def _load_mapping(text: str) -> dict:
    """A YAML/JSON mapping from a file path or an inline string; ``{}`` when it is neither."""
    try:
        path = Path(text)
        source = path.read_text() if path.is_file() else text
        value = yaml.safe_load(source)
    except (OSError, ValueError, yaml.YAMLError):
        return {}
    return value if isinstance(value, dict) else {}


def explicit_keys(args: Any, subcommand: str) -> dict[str, set[str]]:
    """The ``data`` and ``model`` options the user set: on the command line or in ``--config`` files.

    Options left at their defaults are not in it, so a checkpoint's own values can fill them.
    """
    found: dict[str, set[str]] = {"data": set(), "model": set()}

    def add(mapping: Any, groups=("data", "model")) -> None:
        if isinstance(mapping, Namespace):
            mapping = mapping.as_dict()
        if not isinstance(mapping, dict):
            return
        if isinstance(mapping.get(subcommand), (dict, Namespace)):
            add(mapping[subcommand], groups)
            return
        for group in groups:
            section = mapping.get(group)
            if isinstance(section, Namespace):
                section = section.as_dict()
            if isinstance(section, str):  # "data: data.yaml" in a config file, or "model: RankingModel"
                loaded = _load_mapping(section)
                if group == "model" and not loaded:
                    found["model"].add("class_path")
                section = loaded
            if isinstance(section, dict):
                found[group] |= set(section) | set(section.get("init_args") or {})

    if isinstance(args, (dict, Namespace)):
        add(args)
        return found
    argv = list(sys.argv[1:] if args is None else args)
    index = 0
    while index < len(argv):
        name, equals, value = str(argv[index]).partition("=")
        if not equals and name.startswith("-") and index + 1 < len(argv):
            value = str(argv[index + 1])
        name = name.rstrip("+")  # jsonargparse's list-append form: --model.hidden_dims+ 5
        if name in ("-c", "--config"):
            add(_load_mapping(value))
        elif name in ("--data", "--model", "--data.init_args", "--model.init_args"):
            group = name[2:].split(".")[0]
            mapping = _load_mapping(value)
            if name == "--model" and not mapping:  # --model RankingModel: a class, not a mapping
                found["model"].add("class_path")
            add({group: mapping}, (group,))
        elif name.startswith(("--data.", "--model.")):
            group, _, key = name[2:].partition(".")
            found[group].add(key.split(".")[0] if not key.startswith("init_args.") else key.split(".")[1])
        index += 1
    return found


def check_optimizer_arguments(optimizer: dict) -> None:
    """Build the configured optimizer over one dummy parameter, so that the values it refuses (a
    negative learning rate, say) are reported before any data is read, under the option's name."""
    if not optimizer.get("class_path"):
        return
    module, _, name = optimizer["class_path"].rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return  # jsonargparse has already resolved it; nothing to add here
    try:
        # A 2-D parameter, as the models' tables and weights are (Muon, say, takes only matrices).
        cls([torch.nn.Parameter(torch.zeros(2, 2))], **(optimizer.get("init_args") or {}))
    except (RuntimeError, TypeError):
        return  # device-specific settings (fused on a CPU dummy, with an old torch): the real build decides
    except ValueError as err:
        raise ValueError(f"--model.optimizer ({name}) refuses its settings: {err}. Fix the setting it names "
                         "under --model.optimizer.init_args.") from err


def check_trainer_arguments(trainer: dict) -> None:
    """Raise ``ValueError`` for Trainer settings that Lightning would reject only after the data is processed."""
    def fail(name: str, expected: str) -> None:
        raise ValueError(f"--trainer.{name} must be {expected}, got {trainer[name]!r}.")

    def number(name: str) -> bool:
        return isinstance(trainer.get(name), (int, float)) and not isinstance(trainer.get(name), bool)

    bounds = {"max_epochs": -1, "max_steps": -1, "num_sanity_val_steps": -1, "min_epochs": 0, "min_steps": 0,
              "log_every_n_steps": 0, "gradient_clip_val": 0, "accumulate_grad_batches": 1,
              "check_val_every_n_epoch": 1, "num_nodes": 1}
    for name, low in bounds.items():
        if trainer.get(name) is not None and (not number(name) or trainer[name] < low):
            fail(name, f"a number >= {low}" + (" (-1: no limit)" if low == -1 else ""))
    if trainer.get("max_epochs") == 0:  # Lightning would stop at once, leaving an empty run folder
        fail("max_epochs", "a number >= 1 (-1: no limit)")
    for part in ("train", "val", "test", "predict"):
        name = f"limit_{part}_batches"
        if trainer.get(name) is not None and (not number(name) or trainer[name] < 0):
            fail(name, "a number >= 0 (a share of the batches if below 1)")
    accelerator = trainer.get("accelerator")
    if isinstance(accelerator, str) and accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ValueError(f"--trainer.accelerator {accelerator} needs a CUDA device, and none is visible here. Use "
                         "--trainer.accelerator cpu (or leave out configs/trainer/gpu.yaml).")


def check_plateau_mode(scheduler: dict, task: type) -> None:
    """The configured ``ReduceLROnPlateau`` against the task's monitored metric, before any data is read
    (:meth:`GraphTask.configure_optimizers` checks the built scheduler again)."""
    if not str(scheduler.get("class_path", "")).endswith("ReduceLROnPlateau"):
        return
    mode = _as_dict(scheduler.get("init_args")).get("mode", "min")
    if mode != task.monitor_mode:
        raise ValueError(plateau_mode_message(task.monitor, task.monitor_mode, mode))


def configured_callbacks(trainer: Any) -> list[dict]:
    """The callbacks of a parsed ``trainer`` config as mappings (``class_path``, ``init_args``): a config may
    give one callback as a mapping instead of a list."""
    callbacks = _as_dict(trainer).get("callbacks") or []
    if isinstance(callbacks, (dict, Namespace)):
        callbacks = [callbacks]
    return [_as_dict(callback) for callback in callbacks if isinstance(callback, (dict, Namespace))]


def check_monitored_cutoffs(ranking_ks: Any, trainer: dict) -> None:
    """Raise ``ValueError`` when a configured callback monitors a top-K metric (``val_ndcg@10``) at a K that
    ``--model.ranking_ks`` leaves out: it would never be logged, and the callback would stop the run with a
    traceback after the first validation."""
    if not isinstance(ranking_ks, (list, tuple)):
        return
    for callback in configured_callbacks(trainer):
        monitor = (callback.get("init_args") or {}).get("monitor")
        found = re.fullmatch(r"\w+@(\d+)", monitor) if isinstance(monitor, str) else None
        if found and int(found.group(1)) not in ranking_ks:
            k, name = int(found.group(1)), str(callback.get("class_path", "a callback")).rsplit(".", 1)[-1]
            raise ValueError(f"--model.ranking_ks {list(ranking_ks)} leaves out {k}, but the config's {name} monitors "
                             f"{monitor}, which would then never be logged. Add {k} to --model.ranking_ks, e.g. "
                             f"{sorted({*ranking_ks, k})}.")


def _set_sigterm(handler: Any) -> Any:
    """Install ``handler`` for SIGTERM (main thread only); return the previous one."""
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signal.SIGTERM)
    if handler is not None:
        signal.signal(signal.SIGTERM, handler)
    return previous


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM outside a Trainer run: unwind (``finally`` blocks remove temporaries) and exit 143.

    While a Trainer runs, Lightning's handler is installed and calls this one after its own: then
    this does nothing, and Lightning stops at the end of the step and raises SIGTERMException.
    """
    if signal.getsignal(signal.SIGTERM) is _terminate:
        raise Terminated()


# jsonargparse's messages around the error a class raised while being built.
JSONARGPARSE_WRAPPERS = ("Does not validate against any of the Union subtypes", "Problem with given class_path")
# Which option a union of classes belongs to, by the base class its message lists among the subtypes.
UNION_OPTIONS = (("GraphTask", "--model"), ("Callback", "--trainer.callbacks"), ("Logger", "--trainer.logger"))


def error_line(err: BaseException, command: str | None = None) -> str:
    """One ``error:`` line for a user error: the message with its lines joined."""
    if isinstance(err, OSError) and err.errno is not None and err.filename is not None:
        text = (f"{err.strerror}: {err.filename}. Check that the path exists, is of the kind expected (file or "
                "folder) and is writable.")
    else:
        text = str(err) or type(err).__name__
    # A bad --model option, found while parsing (ArgumentError) or when the task is built (ValueError):
    # jsonargparse lists every type the task union could have been, and dumps the options; keep the reason.
    # The same for any class-valued option (--trainer.callbacks ...): the first class's reason, under its key.
    task = re.search(r"Problem with given class_path '([^']+)':\s*(.*?)"
                     r"(?=\s+- (?:Problem with given class_path|Expected a <class 'NoneType'>)|\s*$)", text, re.S)
    if task:
        key = re.match(r'\s*Parser key "([^"]+)":', text)
        text = f"--{key.group(1) if key else 'model'} ({task.group(1).rpartition('.')[2]}): {task.group(2)}"
    elif text.startswith("Does not validate against any of the Union subtypes") and err.__cause__ is not None:
        # The same, raised while a class is built (the task, a callback): the reason is the exception
        # jsonargparse chained, past its own wrappers (a project message raised `from` another is kept).
        cause = err.__cause__
        while cause.__cause__ is not None and str(cause).startswith(JSONARGPARSE_WRAPPERS):
            cause = cause.__cause__
        name = re.search(r"class_path='(?:[\w.]+\.)?(\w+)'", text)
        option = next((key for kind, key in UNION_OPTIONS if kind in text.split("Errors:")[0]), None)
        label = f"{option} ({name.group(1)})" if option and name else (name.group(1) if name else "")
        text = f"{label}: {cause}" if label else str(cause)
    if isinstance(err, ArgumentError):
        text = (text.strip().rstrip(".") + f". See `python -m movielens_gnn {command or '<command>'} --help` for the "
                "accepted options.")
    return "error: " + " ".join(line.strip() for line in text.strip().splitlines() if line.strip())


def main(args: Any = None, run: bool = True, callbacks: Sequence[Callback] = ()) -> Any:
    """Run the CLI; ``args`` (a list or dict) replaces ``sys.argv`` as in LightningCLI.

    With ``run=False`` there is no subcommand: the model, data module and trainer are only
    instantiated from ``args`` (for benchmarks and notebooks). ``recommend``, ``describe``, ``export`` and
    ``search`` are handled by their modules and return the text they printed. ``callbacks`` are added to the
    Trainer's (for programs that drive ``fit``, e.g. the search's pruning callback).

    A user error ends the process with exit code 2 and one ``error:`` line on stderr instead of a
    traceback (``MOVIELENS_GNN_DEBUG=1`` shows it); Ctrl-C exits with 130 and SIGTERM with 143,
    after saying how to resume a training run.
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    argv = list(sys.argv[1:] if args is None else args) if not isinstance(args, dict) else []
    previous = _set_sigterm(_terminate)
    hint = ResumeHint()
    with warnings.catch_warnings(), _quiet_third_party():
        command = _subcommand_of(argv) if argv else None
        resuming = command == "fit"  # a resumed fit (--ckpt_path, perhaps from a config); a new run's folder is empty
        for message in THIRD_PARTY_NOISE + (EVALUATION_NOISE if command in EVALUATION_COMMANDS else ()) \
                + (RESUME_NOISE if resuming else ()):
            warnings.filterwarnings("ignore", message=message)
        return _main(args, argv, run, [hint, *callbacks], previous)


# Third-party messages that say nothing to a user of this tool, printed at every start (Lightning 2.6
# on torch >= 2.10): a deprecation warning inside Lightning itself, twice, and logged advertisements.
THIRD_PARTY_NOISE = (r"`isinstance\(treespec, LeafSpec\)` is deprecated",)
# validate/test/predict with a checkpoint: Lightning restores the checkpoint callbacks' states and warns that
# their folder differs from this run's, or that this run lacks them (a run without --config), though it writes
# no checkpoint and stops no training. (In fit both mean a resumed run lost something: shown there.)
EVALUATION_NOISE = (r"The dirpath has changed from", r"Be aware that when using `ckpt_path`, callbacks used to create")
# fit --ckpt_path: a resumed run goes on saving into its own version_N folder, which holds its checkpoints by design.
RESUME_NOISE = (r"Checkpoint directory .* exists and is not empty",)
# Lightning's "💡 Tip:" lines (litlogger at every start; litmodels where no ModelCheckpoint is configured).
ADVERTISEMENTS = ("💡 Tip:", "litlogger", "litmodels")


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in ADVERTISEMENTS)


@contextlib.contextmanager
def _quiet_third_party():
    """Drop Lightning's logged advertisements while the CLI runs (and only then)."""
    noise = _DropNoise()
    loggers = [logging.getLogger(name) for name in ("pytorch_lightning.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero")]
    for logger in loggers:
        logger.addFilter(noise)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(noise)


def overview() -> str:
    """What ``movielens-gnn --help`` prints: every command with one line."""
    width = max(map(len, COMMANDS))
    lines = [f"usage: movielens-gnn COMMAND [options]   (or: python -m movielens_gnn COMMAND ...)", "",
             "Graph neural network recommenders on MovieLens, on PyTorch Lightning.", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()]
    lines += ["", "Run `movielens-gnn COMMAND --help` for a command's options; `--version` prints the version."]
    return "\n".join(lines) + "\n"


def _main(args: Any, argv: list[str], run: bool, callbacks: list[Callback], previous: Any) -> Any:
    hint = callbacks[0]
    if argv in (["-h"], ["--help"], []) and run and not isinstance(args, dict):
        print(overview(), end="")
        return None
    if argv == ["--version"]:
        print(f"movielens_gnn {__version__}")
        return None
    try:
        if argv and argv[0] in EXTRA_COMMANDS:
            return importlib.import_module(EXTRA_COMMANDS[argv[0]]).main(argv[1:])
        if argv and not str(argv[0]).startswith("-") and argv[0] not in COMMANDS:  # Lightning's would list its 4 only
            close = difflib.get_close_matches(str(argv[0]), COMMANDS, n=1)
            raise ValueError(f"Unknown command {argv[0]!r}{f' (did you mean {close[0]}?)' if close else ''}; the commands "
                             f"are {', '.join(COMMANDS)}. `{PROG} --help` says what each does.")
        return MovieLensCLI(
            GraphTask,
            MovieLensDataModule,
            subclass_mode_model=True,
            seed_everything_default=42,
            save_config_callback=RunConfig,
            save_config_kwargs={"overwrite": True},
            trainer_defaults={"callbacks": callbacks},
            # No abbreviated options: the checkpoint checks must see which options were given, by their full names.
            parser_class=NamedParser,
            parser_kwargs={"prog": PROG, "exit_on_error": False, "allow_abbrev": False,
                           **{c: {"exit_on_error": False, "allow_abbrev": False} for c in LIGHTNING_COMMANDS}},
            args=args,
            run=run,
        )
    except SIGTERMException as err:  # Lightning stopped the run; ResumeHint said how to resume
        raise SystemExit(EXIT_TERMINATED) from err
    except SystemExit as err:
        if isinstance(hint.interrupted, KeyboardInterrupt):  # Lightning's sys.exit(1) after Ctrl-C
            raise SystemExit(EXIT_INTERRUPTED) from err
        raise
    except Terminated as err:
        print("error: stopped by SIGTERM; nothing was left half-written. Run the command again.", file=sys.stderr)
        raise SystemExit(EXIT_TERMINATED) from err
    except KeyboardInterrupt as err:
        print("error: interrupted (Ctrl-C); nothing was left half-written. Run the command again.", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from err
    except USER_ERRORS as err:
        if os.environ.get("MOVIELENS_GNN_DEBUG"):
            raise
        print(error_line(err, argv[0] if argv[:1] and argv[0] in LIGHTNING_COMMANDS else None), file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR) from err
    finally:
        _set_sigterm(previous)
