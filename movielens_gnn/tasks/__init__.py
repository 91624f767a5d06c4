"""The LightningModules: :class:`RatingModel` (stars, MSE) and :class:`RankingModel` (top-K, BPR).

The CLI picks one with ``--model RatingModel`` / ``--model RankingModel`` (or ``class_path`` in a
config); without one it is :class:`RatingModel`, as before the ranking task existed.
"""

from __future__ import annotations

from movielens_gnn.checkpoint import CheckpointError
from movielens_gnn.tasks.base import GraphTask
from movielens_gnn.tasks.ranking import RankingModel
from movielens_gnn.tasks.rating import RatingModel

#: Task classes by name. Checkpoints name their task by class path; only these are ever built from one.
TASKS: dict[str, type[GraphTask]] = {cls.__name__: cls for cls in (RatingModel, RankingModel)}
DEFAULT_TASK = RatingModel


def task_class(class_path: str | None) -> type[GraphTask]:
    """The task a checkpoint's or config's ``class_path`` names (:data:`DEFAULT_TASK` for ``None``).

    Raises:
        CheckpointError: ``class_path`` is not one of :data:`TASKS` (nothing else is imported).
    """
    if class_path is None:
        return DEFAULT_TASK
    name = str(class_path).rpartition(".")[2]
    module = str(class_path).rpartition(".")[0]
    if name not in TASKS or module not in ("", "movielens_gnn.tasks", TASKS[name].__module__):
        raise CheckpointError(f"Unknown task {class_path!r}; this version has {', '.join(TASKS)}.")
    return TASKS[name]


__all__ = ["DEFAULT_TASK", "TASKS", "GraphTask", "RankingModel", "RatingModel", "task_class"]
