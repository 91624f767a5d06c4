"""Command line: ``python -m movielens_gnn {fit,validate,test,predict} --config FILE``."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from pytorch_lightning.cli import LightningCLI

from movielens_gnn.data.datamodule import MovieLensDataModule
from movielens_gnn.models.rating_model import RatingModel

log = logging.getLogger("movielens_gnn")

# Sizes known only from the data flow into the model once the data module exists.
LINKED_FROM_DATA = ("num_users", "num_items", "user_feature_dim", "item_feature_dim", "rating_mean")


class MovieLensCLI(LightningCLI):
    """LightningCLI with the data-derived model arguments linked from the data module."""

    def add_arguments_to_parser(self, parser) -> None:
        for name in LINKED_FROM_DATA:
            parser.link_arguments(f"data.{name}", f"model.{name}", apply_on="instantiate")

    def after_fit(self) -> None:
        checkpoint = self.trainer.checkpoint_callback
        best = getattr(checkpoint, "best_model_path", "")
        if best and self.trainer.is_global_zero:
            score = checkpoint.best_model_score
            log.info("Best checkpoint: %s (%s=%.4f)", best, checkpoint.monitor, float(score))
            log.info("Evaluate it once on the test part with: python -m movielens_gnn test --config <same config> --ckpt_path %s", best)


def main(args: Any = None, run: bool = True) -> MovieLensCLI:
    """Run the CLI; ``args`` (a list or dict) replaces ``sys.argv`` as in LightningCLI.

    With ``run=False`` there is no subcommand: the model, data module and trainer are only
    instantiated from ``args`` (for benchmarks and notebooks).

    A user error (missing or corrupt data, a bad value, an engine that is not installed) ends the
    process with one message on stderr and exit code 2 instead of a traceback; set
    ``MOVIELENS_GNN_DEBUG=1`` to see it.
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return MovieLensCLI(
            RatingModel,
            MovieLensDataModule,
            seed_everything_default=42,
            save_config_kwargs={"overwrite": True},
            args=args,
            run=run,
        )
    except (FileNotFoundError, ValueError, ImportError) as err:
        if os.environ.get("MOVIELENS_GNN_DEBUG"):
            raise
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from err
