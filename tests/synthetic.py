"""Tiny MovieLens-100K look-alikes, written in the original file formats."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
          "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
          "War", "Western")
OCCUPATIONS = ("administrator", "artist", "doctor", "educator", "engineer", "entertainment", "executive",
               "healthcare", "homemaker", "lawyer", "librarian", "marketing", "none", "other", "programmer",
               "retired", "salesman", "scientist", "student", "technician", "writer")
LATIN1_TITLE = "Misérables, Les (1995)"


def make_ratings(num_users: int, num_items: int, per_user: int, seed: int) -> np.ndarray:
    """``(E, 4)`` int64 rows ``user item rating timestamp`` (1-based ids) from a low-rank model.

    Every user rates ``per_user`` distinct items and every item is rated at least once.
    """
    rng = np.random.default_rng(seed)
    users_f = rng.normal(size=(num_users, 3))
    items_f = rng.normal(size=(num_items, 3))
    rows = []
    for u in range(num_users):
        # The first items go round-robin so that every item gets rated.
        first = [(u * per_user + k) % num_items for k in range(min(per_user, num_items))]
        chosen = list(dict.fromkeys(first))
        rest = [i for i in rng.permutation(num_items) if i not in chosen]
        chosen += rest[: per_user - len(chosen)]
        for i in chosen:
            score = 3.0 + users_f[u] @ items_f[i] + rng.normal(scale=0.3)
            rating = int(np.clip(np.rint(score), 1, 5))
            rows.append((u + 1, i + 1, rating, 880_000_000 + int(rng.integers(0, 10_000_000))))
    return np.array(rows, dtype=np.int64)


def write_ml100k(root: Path, num_users: int = 24, num_items: int = 30, per_user: int = 12, seed: int = 0) -> Path:
    """Write ``root/ml-100k/`` with every file the real archive has that the project reads.

    Returns:
        The ``ml-100k`` folder.
    """
    folder = root / "ml-100k"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + 1)
    data = make_ratings(num_users, num_items, per_user, seed)

    def ratings_text(rows: np.ndarray) -> str:
        return "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in rows)

    (folder / "u.data").write_text(ratings_text(data))
    (folder / "u.info").write_text(f"{num_users} users\n{num_items} items\n{len(data)} ratings\n")
    (folder / "u.genre").write_text("".join(f"{g}|{k}\n" for k, g in enumerate(GENRES)) + "\n")
    (folder / "u.occupation").write_text("".join(f"{o}\n" for o in OCCUPATIONS))
    users = []
    for u in range(1, num_users + 1):
        gender = "MF"[u % 2]
        users.append(f"{u}|{18 + (u * 7) % 50}|{gender}|{OCCUPATIONS[u % len(OCCUPATIONS)]}|{10000 + u:05d}\n")
    (folder / "u.user").write_text("".join(users))
    items = []
    for i in range(1, num_items + 1):
        title = LATIN1_TITLE if i == 2 else f"Movie {i} ({1980 + i % 20})"
        date = "" if i == num_items else f"01-Jan-{1980 + i % 20}"
        flags = ["0"] * len(GENRES)
        flags[1 + i % (len(GENRES) - 1)] = "1"
        items.append(f"{i}|{title}|{date}||http://example.invalid/{i}|{'|'.join(flags)}\n")
    (folder / "u.item").write_bytes("".join(items).encode("latin-1"))
    # Five disjoint folds, as uX.base/uX.test.
    folds = rng.permutation(len(data)) % 5
    for k in range(5):
        (folder / f"u{k + 1}.base").write_text(ratings_text(data[folds != k]))
        (folder / f"u{k + 1}.test").write_text(ratings_text(data[folds == k]))
    # ua/ub: a fixed number of ratings per user in test.
    for name, per_test in (("ua", 2), ("ub", 3)):
        test_mask = np.zeros(len(data), dtype=bool)
        for u in range(1, num_users + 1):
            rows = np.flatnonzero(data[:, 0] == u)
            test_mask[rng.choice(rows, size=per_test, replace=False)] = True
        (folder / f"{name}.base").write_text(ratings_text(data[~test_mask]))
        (folder / f"{name}.test").write_text(ratings_text(data[test_mask]))
    return folder


def zip_folder(folder: Path, archive: Path) -> bytes:
    """Zip ``folder`` as ``<folder.name>/...`` into ``archive``; return the bytes written."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, f"{folder.name}/{path.name}")
    archive.write_bytes(buffer.getvalue())
    return buffer.getvalue()
