"""``python -m movielens_gnn export``: a checkpoint's embeddings, id maps and titles, for serving elsewhere.

Writes into ``--out DIR`` (created; it must not exist or be empty), atomically (a temporary folder renamed):

* ``tower<k>_users.npy`` ``(U, D)`` and ``tower<k>_items.npy`` ``(I, D)`` float32: each tower's final user and
  item vectors over the training graph (the rating task has one tower, two with the autoencoder; the
  ranking task one);
* ``tower<k>_user_bias.npy`` ``(U,)``, ``tower<k>_item_bias.npy`` ``(I,)`` and the global mean in
  ``export.json`` for towers with a dot head (``score = u·i + mean + b_u + b_i``);
* ``users.csv`` (``index,user_id``) and ``items.csv`` (``index,item_id,title,year,genres``): row ``k`` of every
  array is internal index ``k``;
* ``export.json``: the task, the scoring rule, the shapes, the rating scale, and what cannot be exported as
  vectors (an MLP head; the hybrid's EASE part, whose ``(I, I)`` matrix is written as ``item_item.npy``).

A nearest-neighbour index over ``tower0_items.npy`` then serves top-K lists for dot-product models.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from movielens_gnn.files import remove_stale, temp_dir
from movielens_gnn.models.heads import DotHead
from movielens_gnn.recommend import ArgumentParser, add_allow_mismatch, add_data_location, load_for_inference
from movielens_gnn.tasks.ranking import RankingModel


def check_out(out: Path) -> None:
    """Raise ``FileExistsError`` unless ``out`` is new or an empty folder (an export never overwrites)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"--out {out} exists and is not an empty folder; choose a new folder (nothing is "
                              "overwritten).")


def export(model, datamodule, out: Path) -> dict:
    """Write the export of ``model`` (with its ``datamodule``) into the folder ``out``; return the manifest."""
    check_out(out)
    data, side = datamodule.data, datamodule.side
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(out.parent, out.name)
    tmp = temp_dir(out)
    try:
        with torch.no_grad():
            tables = model.encode()
        tables = [tables] if isinstance(model, RankingModel) else list(tables)
        heads = [None] if isinstance(model, RankingModel) else model.tower_heads
        towers = []
        for k, ((users, items), head) in enumerate(zip(tables, heads)):
            np.save(tmp / f"tower{k}_users.npy", users.detach().cpu().float().numpy())
            np.save(tmp / f"tower{k}_items.npy", items.detach().cpu().float().numpy())
            tower = {"users": f"tower{k}_users.npy", "items": f"tower{k}_items.npy", "dim": int(users.shape[1])}
            if isinstance(head, DotHead):
                np.save(tmp / f"tower{k}_user_bias.npy", head.user_bias.weight.detach().cpu().float().squeeze(1).numpy())
                np.save(tmp / f"tower{k}_item_bias.npy", head.item_bias.weight.detach().cpu().float().squeeze(1).numpy())
                tower.update(user_bias=f"tower{k}_user_bias.npy", item_bias=f"tower{k}_item_bias.npy",
                             mean=float(head.rating_mean), score="u·i + mean + user_bias + item_bias")
            elif head is not None:
                tower["score"] = "an MLP head over (u, i, u*i): use movielens_gnn's model to score, the vectors alone do not"
            else:
                tower["score"] = "u·i"
            towers.append(tower)
        manifest = {"task": type(model).__name__, "users": len(data.user_ids), "items": len(data.item_ids),
                    "rating_values": datamodule.rating_values, "towers": towers,
                    "combine": "mean of the towers' scores" if len(towers) > 1 else "the tower's score",
                    "dataset": datamodule.dataset.NAME}
        if isinstance(model, RankingModel) and model.item_item is not None:
            np.save(tmp / "item_item.npy", model.item_item.weights.detach().cpu().float().numpy())
            manifest["item_item"] = {"file": "item_item.npy", "weight": float(model.hparams.item_item_weight),
                                     "score": "(1 - weight) * z(u·i) + weight * z(x_u @ item_item), z standardising "
                                              "each user's scores over all items (mean 0, sample standard deviation "
                                              "1: ddof 1); x_u the user's 0/1 row of training interactions (the "
                                              "training part, as the graph), from your data (not in this export)"}
        pd.DataFrame({"index": np.arange(len(data.user_ids)), "user_id": data.user_ids.numpy()}).to_csv(
            tmp / "users.csv", index=False)
        info = side.item_info(data.item_ids.numpy())
        pd.DataFrame({"index": np.arange(len(data.item_ids)), "item_id": data.item_ids.numpy(),
                      "title": info["title"].to_numpy(), "year": info["year"].to_numpy(),
                      "genres": info["genres"].to_numpy()}).to_csv(tmp / "items.csv", index=False)
        (tmp / "export.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
        if out.is_dir():
            out.rmdir()  # empty (checked above): replaced by the finished folder
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def main(argv: Sequence[str]) -> str:
    """Parse ``argv`` (without the word ``export``), export, and return the line printed."""
    parser = ArgumentParser(prog="python -m movielens_gnn export", description=__doc__)
    parser.add_argument("--ckpt_path", required=True, help="checkpoint written by fit")
    parser.add_argument("--out", required=True, type=Path, help="new (or empty) folder to write into")
    add_data_location(parser)
    add_allow_mismatch(parser, "export")
    args = parser.parse_args(list(argv))
    check_out(args.out)  # before the checkpoint is read
    model, datamodule = load_for_inference(args.ckpt_path, args.root, cache_dir=args.cache_dir,
                                           allow_mismatch=args.allow_mismatch, path=args.path,
                                           items_path=args.items_path)
    manifest = export(model, datamodule, args.out)
    text = (f"Exported {manifest['task']} ({len(manifest['towers'])} tower(s), {manifest['users']} users, "
            f"{manifest['items']} items) to {args.out}\n")
    print(text, end="")
    return text
