"""``python -m movielens_gnn search``: hyperparameter search with Optuna, pruned on the validation metric.

    pip install -e ".[search]"
    python -m movielens_gnn search --config configs/gcn_dot.yaml --space configs/search/gcn_dot.yaml \\
        --trials 30 --out search/gcn_dot -- --data.root ../shared/datasets

Every trial is one ``fit`` of ``--config`` with the sampled options on top (and any options after ``--``),
in its own run folder. Trials are scored on the validation metric the config selects checkpoints on
(``val_rmse``, or ``val_ndcg@10`` for ranking configs): the best epoch's value; the test part is never
touched. Optuna's TPE sampler proposes the values and its median pruner stops a trial whose validation
metric, reported after every epoch, is worse than the median of earlier trials at the same epoch.
The study lives in ``OUT/study.db`` (SQLite), so an interrupted search resumes where it stopped.
At the end ``OUT/trials.md`` holds the table of trials and ``OUT/best.yaml`` the config with the best
values written in, ready for ``fit --config OUT/best.yaml``.

The search space is YAML, one entry per option (names as on the command line, without ``--``)::

    model.embedding_dim: {type: categorical, choices: [32, 64, 128]}
    model.optimizer.init_args.lr: {type: float, low: 0.001, high: 0.03, log: true}
    model.dropout: {type: float, low: 0.0, high: 0.5}
    model.num_layers: {type: int, low: 1, high: 4}

The grid search of ``benchmarks/search.py`` stays as the simple path (no extra dependency).
"""

from __future__ import annotations

import copy
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import pytorch_lightning as pl
import yaml

from movielens_gnn.checkpoint import load_checkpoint
from movielens_gnn.progress import monitored
from movielens_gnn.recommend import ArgumentParser

log = logging.getLogger(__name__)

KINDS = ("float", "int", "categorical")


@dataclass(frozen=True)
class Param:
    """One searched option: its command-line name (``model.dropout``) and its distribution."""

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple | None = None

    def suggest(self, trial) -> Any:
        if self.kind == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log)
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_categorical(self.name, list(self.choices))


def read_space(path: Path) -> list[Param]:
    """Parse a search-space YAML file; ``ValueError`` naming the entry and what is wrong."""
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as err:
        raise FileNotFoundError(f"--space {path}: cannot read it ({err.strerror or err}).") from err
    except yaml.YAMLError as err:
        raise ValueError(f"--space {path} is not valid YAML ({' '.join(str(err).split())}); fix the line it names.") from err
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"--space {path}: expected a mapping of option -> {{type: ..., ...}}, got {type(raw).__name__}.")
    params = []
    for name, spec in raw.items():
        kind = spec.get("type") if isinstance(spec, dict) else None
        if kind not in KINDS:
            raise ValueError(f"--space {path}: {name} needs type: one of {', '.join(KINDS)}; got {spec!r}.")
        if kind == "categorical":
            choices = spec.get("choices")
            if not isinstance(choices, list) or not choices:
                raise ValueError(f"--space {path}: {name} (categorical) needs a non-empty list of choices.")
            params.append(Param(name, kind, choices=tuple(choices)))
            continue
        low, high = spec.get("low"), spec.get("high")
        if not (isinstance(low, (int, float)) and isinstance(high, (int, float)) and low < high):
            raise ValueError(f"--space {path}: {name} ({kind}) needs numbers low < high; got low={low!r}, high={high!r}.")
        if spec.get("log") and low <= 0:
            raise ValueError(f"--space {path}: {name} has log: true, so low must be > 0; got {low}.")
        params.append(Param(name, kind, float(low), float(high), bool(spec.get("log", False))))
    return params


class TrialFailed(ValueError):
    """A trial's ``fit`` refused its options or data (the CLI has printed why)."""


class TrialStopped(KeyboardInterrupt):
    """A trial's ``fit`` was interrupted (Ctrl-C, SIGTERM): ``code`` is the exit code it ended with."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class PruneOnValidation(pl.Callback):
    """Report the monitored validation metric to an Optuna trial after every epoch; stop the fit when the
    pruner says so (:attr:`pruned` is then set, and the caller marks the trial pruned)."""

    def __init__(self, trial) -> None:
        self.trial = trial
        self.pruned = False

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metric, _ = monitored(trainer, pl_module)
        value = trainer.callback_metrics.get(metric)
        if value is None or not math.isfinite(float(value)):
            return
        self.trial.report(float(value), step=trainer.current_epoch)
        if self.trial.should_prune():
            self.pruned = True
            trainer.should_stop = True


def best_config(config: dict, values: dict[str, Any]) -> dict:
    """``config`` (a parsed model config) with each ``a.b.c`` option of ``values`` written in (under
    ``model.init_args`` where the config names the task by ``class_path``)."""
    out = copy.deepcopy(config)
    for name, value in values.items():
        keys = name.split(".")
        node = out
        for depth, key in enumerate(keys[:-1]):
            node = node.setdefault(key, {})
            if depth == 0 and key == "model" and "class_path" in node and keys[1] not in ("class_path", "init_args"):
                node = node.setdefault("init_args", {})
        node[keys[-1]] = yaml.safe_load(value) if isinstance(value, str) else value  # "[64, 64]" -> [64, 64]
    return out


def passthrough_options(passthrough: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """The ``--a.b value`` (or ``--a.b=value``) options given after ``--``, as ``{"a.b": value}``, and the
    rest (a ``--config``, anything not such a pair), in order."""
    options: dict[str, str] = {}
    rest: list[str] = []
    index = 0
    while index < len(passthrough):
        name, equals, value = passthrough[index].partition("=")
        # Not "--a.b+ value" (jsonargparse's list append): a config file has no key for it.
        pair = (name.startswith("--") and "." in name and not name.endswith("+")
                and bool(equals or index + 1 < len(passthrough)))
        if pair and not equals:
            value = passthrough[index + 1]
            pair = not value.startswith("--")
        if pair:
            options[name[2:]] = value
            index += 1 if equals else 2
        else:
            rest.append(passthrough[index])
            index += 1
    return options, rest


def main(argv: Sequence[str]) -> str:
    """Parse ``argv`` (without the word ``search``), run the search, print and return the table of trials."""
    argv = list(argv)
    passthrough = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = ArgumentParser(prog="python -m movielens_gnn search", description=__doc__)
    parser.add_argument("--config", required=True, type=Path, help="the model config every trial starts from")
    parser.add_argument("--space", required=True, type=Path, help="YAML: option -> {type, low, high, log | choices}")
    parser.add_argument("--trials", type=int, default=20, help="trials to run (added to those already in OUT)")
    parser.add_argument("--out", type=Path, help="folder of the study, trials.md and best.yaml (default search/<config>)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampler")
    parser.add_argument("--no-prune", action="store_true", help="run every trial to its end")
    args = parser.parse_args(argv)
    try:
        import optuna
    except ImportError as err:
        raise ImportError("search needs Optuna: pip install -e \".[search]\" (or pip install optuna).") from err
    if args.trials < 1:
        raise ValueError(f"--trials must be at least 1, got {args.trials}.")
    space = read_space(args.space)
    try:
        config = yaml.safe_load(args.config.read_text()) if args.config.is_file() else None
    except yaml.YAMLError as err:
        raise ValueError(f"--config {args.config} is not valid YAML ({' '.join(str(err).split())}).") from err
    if not isinstance(config, dict):
        raise FileNotFoundError(f"--config {args.config} is not a readable config file.")
    out = args.out or Path("search") / args.config.stem
    out.mkdir(parents=True, exist_ok=True)
    from movielens_gnn.cli import EXIT_USER_ERROR, main as cli_main

    quiet = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]

    def objective(trial) -> float:
        values = {param.name: param.suggest(trial) for param in space}
        # Strings go as typed ("[64, 64]" is parsed by the CLI); numbers and booleans as JSON (true, 0.01).
        overrides = [part for name, value in values.items()
                     for part in (f"--{name}", value if isinstance(value, str) else json.dumps(value))]
        pruner = PruneOnValidation(trial)
        try:
            cli = cli_main(["fit", "--config", str(args.config), *quiet, *passthrough, *overrides], callbacks=[pruner])
        except SystemExit as err:  # Optuna marks a trial failed on an Exception or KeyboardInterrupt, not SystemExit
            if err.code != EXIT_USER_ERROR:  # Ctrl-C or SIGTERM: the search stops with the same exit code
                raise TrialStopped(err.code) from err
            raise TrialFailed(f"trial {trial.number}'s fit stopped (exit code {err.code}) with {' '.join(overrides)}: "
                              f"if the error above names one of these options, fix its entry in --space "
                              f"{args.space}.") from err
        checkpoint = cli.trainer.checkpoint_callback
        # From the checkpoint itself: its file name follows whatever template the config gives.
        trial.set_user_attr("best_epoch", int(load_checkpoint(checkpoint.best_model_path)["epoch"]))
        trial.set_user_attr("epochs", cli.trainer.current_epoch)
        trial.set_user_attr("checkpoint", checkpoint.best_model_path)
        trial.set_user_attr("passthrough", passthrough)  # best.yaml writes in the best trial's own
        if pruner.pruned:
            raise optuna.TrialPruned()
        return float(checkpoint.best_model_score)

    metric_mode = _mode_of(config)
    study = optuna.create_study(
        study_name=args.config.stem, storage=f"sqlite:///{(out / 'study.db').resolve()}", load_if_exists=True,
        direction="maximize" if metric_mode == "max" else "minimize",
        pruner=optuna.pruners.NopPruner() if args.no_prune else optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=5))
    # Seeded past the trials already stored: a resumed search would otherwise draw its first run's values
    # again (TPE starts with seeded random draws), and repeat those trials.
    study.sampler = optuna.samplers.TPESampler(seed=args.seed + len(study.trials))
    searched = {param.name: [param.kind, param.low, param.high, param.log, list(param.choices or ())] for param in space}
    if study.user_attrs.get("space") not in (None, searched):
        log.warning("This study's earlier trials searched another --space (%s): the sampler mixes both. Use another "
                    "--out for another space.", ", ".join(study.user_attrs["space"]))
    study.set_user_attr("space", searched)
    before = study.user_attrs.get("passthrough")
    if before is None:
        study.set_user_attr("passthrough", passthrough)
    elif before != passthrough:
        log.warning("This study's earlier trials ran with `-- %s`, these with `-- %s`: their values compare only if "
                    "those options do not change what a trial measures (epochs, data). Use another --out for another "
                    "setting.", " ".join(before), " ".join(passthrough))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study.optimize(objective, n_trials=args.trials, catch=())
    except TrialStopped as err:  # the trial is stored as failed; the process ends as the fit did
        raise SystemExit(err.code) from err
    text = _table(study, space, args)
    (out / "trials.md").write_text(text)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if complete:
        best = study.best_trial
        # The options given after -- are part of what the trials ran: written in too (max_epochs, the data).
        options, rest = passthrough_options(best.user_attrs.get("passthrough", passthrough))
        also = (f"# The best trial also ran with {' '.join(rest)}, which is not written in below: give it to fit "
                "again, after --config best.yaml.\n" if rest else "")
        (out / "best.yaml").write_text(f"# Best of {len(complete)} complete trials (validation {best.value:.4f}); "
                                       f"python -m movielens_gnn search ... --out {out}\n{also}"
                                       + yaml.safe_dump(best_config(best_config(config, options), best.params),
                                                        sort_keys=False))
        text += f"\nBest config: {out / 'best.yaml'}\n"
    print(text, end="")
    return text


def _mode_of(config: dict) -> str:
    """``max`` when the config's ModelCheckpoint selects the maximum (ranking configs), else ``min``."""
    for callback in (config.get("trainer") or {}).get("callbacks") or []:
        init = callback.get("init_args") or {}
        if callback.get("class_path", "").endswith("ModelCheckpoint") and init.get("monitor"):
            return init.get("mode", "min")
    return "min"


def _table(study, space: list[Param], args) -> str:
    names = [p.name for p in space]
    lines = [f"Search of {args.config} over {args.space} ({len(study.trials)} trials, selected on validation).", "",
             "| trial | state | validation | best epoch | epochs | " + " | ".join(names) + " |",
             "|" + "---|" * (5 + len(names))]
    for t in study.trials:
        value = f"{t.value:.4f}" if t.value is not None else (
            f"{list(t.intermediate_values.values())[-1]:.4f} (last)" if t.intermediate_values else "—")
        params = " | ".join(_short(t.params.get(n)) for n in names)
        lines.append(f"| {t.number} | {t.state.name.lower()} | {value} | {t.user_attrs.get('best_epoch', '—')} | "
                     f"{t.user_attrs.get('epochs', '—')} | {params} |")
    return "\n".join(lines) + "\n"


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
