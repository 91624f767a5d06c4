"""Command line: ``python -m movielens_gnn {fit,validate,test,predict} --config FILE``."""

from __future__ import annotations

import importlib
import logging
import os
import sys
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import torch

from pytorch_lightning.cli import LightningCLI

from movielens_gnn.data.datamodule import MovieLensDataModule
from movielens_gnn.models.rating_model import RatingModel

log = logging.getLogger("movielens_gnn")

# Commands beside LightningCLI's fit/validate/test/predict: name -> module with main(argv), imported when used.
EXTRA_COMMANDS = {"recommend": "movielens_gnn.recommend", "describe": "movielens_gnn.describe"}

# Sizes known only from the data flow into the model once the data module exists.
LINKED_FROM_DATA = ("num_users", "num_items", "user_feature_dim", "item_feature_dim", "rating_mean")


class MovieLensCLI(LightningCLI):
    """LightningCLI with the data-derived model arguments linked from the data module."""

    def add_arguments_to_parser(self, parser) -> None:
        for name in LINKED_FROM_DATA:
            parser.link_arguments(f"data.{name}", f"model.{name}", apply_on="instantiate")
        parser.add_argument("--predict_part", type=Literal["test", "val"], default="test",
                            help="predict: the split part to predict (test or val)")
        parser.link_arguments("predict_part", "data.predict_part")
        parser.add_argument("--predictions", type=str, default="predictions.csv",
                            help="predict: CSV to write (user_id,item_id,rating,prediction, MovieLens ids)")

    def after_predict(self) -> None:
        trainer, datamodule = self.trainer, self.datamodule
        predictions = torch.cat(trainer.predict_loop.predictions).cpu()
        batches = list(datamodule.predict_dataloader())  # same order as the predictions
        users = torch.cat([b.users for b in batches])
        items = torch.cat([b.items for b in batches])
        ratings = torch.cat([b.ratings for b in batches])
        path = Path(self.config[self.subcommand]["predictions"])
        if trainer.world_size > 1:  # each rank predicted its own shard of the edges
            path = path.with_name(f"{path.stem}.rank{trainer.global_rank}{path.suffix}")
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({
            "user_id": datamodule.data.user_ids[users].numpy(),
            "item_id": datamodule.data.item_ids[items].numpy(),
            "rating": ratings.numpy(),
            "prediction": predictions.numpy(),
        }).to_csv(path, index=False, float_format="%.4f")
        log.info("Wrote %d predictions for the %s part to %s", len(predictions), datamodule.predict_part, path)

    def after_fit(self) -> None:
        checkpoint = self.trainer.checkpoint_callback
        best = getattr(checkpoint, "best_model_path", "")
        if best and self.trainer.is_global_zero:
            score = checkpoint.best_model_score
            log.info("Best checkpoint: %s (%s=%.4f)", best, checkpoint.monitor, float(score))
            log.info("Evaluate it once on the test part with: python -m movielens_gnn test --config <same config> --ckpt_path %s", best)
            self._log_sample_recommendations(best)

    def _log_sample_recommendations(self, checkpoint: str, users: int = 3, k: int = 10) -> None:
        """On Weights & Biases runs, a table of the best checkpoint's top-k for the first users."""
        logger = self.trainer.logger
        if type(logger).__name__ != "WandbLogger":
            return
        from movielens_gnn.recommend import load_model, recommend

        datamodule = self.datamodule
        model = load_model(torch.load(checkpoint, map_location="cpu", weights_only=False), datamodule.graph.cpu())
        user_ids = datamodule.data.user_ids[:users].tolist()
        logger.log_table(key="sample_recommendations", dataframe=recommend(model, datamodule, user_ids, k))


def main(args: Any = None, run: bool = True) -> Any:
    """Run the CLI; ``args`` (a list or dict) replaces ``sys.argv`` as in LightningCLI.

    With ``run=False`` there is no subcommand: the model, data module and trainer are only
    instantiated from ``args`` (for benchmarks and notebooks). ``recommend`` is handled by
    :mod:`movielens_gnn.recommend` and returns the text it printed.

    A user error (missing or corrupt data, a bad value, an engine that is not installed) ends the
    process with one message on stderr and exit code 2 instead of a traceback; set
    ``MOVIELENS_GNN_DEBUG=1`` to see it.
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    argv = list(sys.argv[1:] if args is None else args) if not isinstance(args, dict) else []
    try:
        if argv and argv[0] in EXTRA_COMMANDS:
            return importlib.import_module(EXTRA_COMMANDS[argv[0]]).main(argv[1:])
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
