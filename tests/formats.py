"""Tiny look-alikes of every MovieLens release and of a user's own CSV file, in the exact original formats.

* ml-1m: ``ratings.dat`` ``UserID::MovieID::Rating::Timestamp`` (whole stars, no header), ``users.dat``
  ``UserID::Gender::Age::Occupation::Zip-code``, Latin-1 ``movies.dat`` ``MovieID::Title::Genres``.
* ml-10m (folder ``ml-10M100K``): the same ``::`` ratings with half stars, ``movies.dat``; no users file.
* ml-20m/25m/32m/latest-small: ``ratings.csv`` with the header ``userId,movieId,rating,timestamp`` and half
  stars, UTF-8 ``movies.csv`` ``movieId,title,genres`` with titles quoted where they hold commas.

Ids have gaps (as the real movie ids do), some listed movies are never rated, and titles carry
non-ASCII letters and commas.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.synthetic import make_ratings, zip_folder

ML1M_GENRES = ("Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
               "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War",
               "Western")
LATIN1_TITLE = "Misérables, Les (1995)"
COMMA_TITLE = "American President, The (1995)"
QUOTE_TITLE = 'Quotes "Inside" the Title, With Commas (2001)'
AGE_GROUPS = (1, 18, 25, 35, 45, 50, 56)


def item_ids(num_items: int) -> np.ndarray:
    """Movie ids with gaps: 1, 2, 4, 7, 11, ... (differences 1, 2, 3, ...)."""
    return 1 + np.concatenate([[0], np.cumsum(np.arange(1, num_items))])


def user_ids(num_users: int, gaps: bool) -> np.ndarray:
    return np.arange(1, num_users + 1) * (3 if gaps else 1) - (2 if gaps else 0)


def ratings_table(num_users: int = 20, num_items: int = 26, per_user: int = 12, half_stars: bool = False,
                  user_gaps: bool = False, seed: int = 0) -> np.ndarray:
    """``(E, 4)`` float rows ``user_id item_id rating timestamp`` with the dataset's ids (gaps included)."""
    rows = make_ratings(num_users, num_items, per_user, seed).astype(np.float64)
    if half_stars:  # shift a seeded half of the ratings down by half a star: 0.5..5.0 in ten steps
        rng = np.random.default_rng(seed + 7)
        rows[:, 2] -= 0.5 * (rng.random(len(rows)) < 0.5)
    rows[:, 0] = user_ids(num_users, user_gaps)[rows[:, 0].astype(int) - 1]
    rows[:, 1] = item_ids(num_items)[rows[:, 1].astype(int) - 1]
    return rows


def titles(num_items: int) -> list[str]:
    names = [f"Movie {k} ({1990 + k % 20})" for k in range(num_items + 2)]
    names[1], names[2], names[3] = LATIN1_TITLE, COMMA_TITLE, QUOTE_TITLE
    return names


def genres_of(k: int, names: tuple[str, ...]) -> str:
    return "|".join(sorted({names[k % len(names)], names[(3 * k + 1) % len(names)]}))


def _rating_text(value: float) -> str:
    return f"{value:g}" if value != int(value) else f"{int(value)}"


def write_ml1m(root: Path, num_users: int = 20, num_items: int = 26, seed: int = 0) -> Path:
    folder = root / "ml-1m"
    folder.mkdir(parents=True, exist_ok=True)
    rows = ratings_table(num_users, num_items, seed=seed)
    (folder / "ratings.dat").write_text("".join(f"{int(u)}::{int(i)}::{int(r)}::{int(t)}\n" for u, i, r, t in rows))
    users = [f"{u}::{'MF'[u % 2]}::{AGE_GROUPS[u % 7]}::{u % 21}::{10000 + u:05d}\n" for u in range(1, num_users + 1)]
    (folder / "users.dat").write_text("".join(users))
    ids, names = item_ids(num_items + 2), titles(num_items)  # two listed movies nobody rated
    movies = [f"{m}::{names[k]}::{genres_of(k, ML1M_GENRES)}\n" for k, m in enumerate(ids)]
    (folder / "movies.dat").write_bytes("".join(movies).encode("latin-1"))
    return folder


def write_ml10m(root: Path, num_users: int = 20, num_items: int = 26, seed: int = 0) -> Path:
    folder = root / "ml-10M100K"
    folder.mkdir(parents=True, exist_ok=True)
    rows = ratings_table(num_users, num_items, half_stars=True, user_gaps=True, seed=seed)
    (folder / "ratings.dat").write_text(
        "".join(f"{int(u)}::{int(i)}::{_rating_text(r)}::{int(t)}\n" for u, i, r, t in rows))
    ids, names = item_ids(num_items + 2), titles(num_items)
    movies = [f"{m}::{names[k]}::{genres_of(k, ML1M_GENRES + ('IMAX',))}\n" for k, m in enumerate(ids)]
    (folder / "movies.dat").write_text("".join(movies), encoding="utf-8")
    return folder


def _csv_field(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if ("," in text or '"' in text) else text


def write_csv_release(root: Path, folder_name: str, num_users: int = 20, num_items: int = 26, seed: int = 0) -> Path:
    """A CSV-format release (ml-20m, ml-25m, ml-32m, ml-latest-small) in ``root/folder_name``."""
    folder = root / folder_name
    folder.mkdir(parents=True, exist_ok=True)
    rows = ratings_table(num_users, num_items, half_stars=True, user_gaps=True, seed=seed)
    body = "".join(f"{int(u)},{int(i)},{r:.1f},{int(t)}\n" for u, i, r, t in rows)
    (folder / "ratings.csv").write_text("userId,movieId,rating,timestamp\n" + body, encoding="utf-8")
    ids, names = item_ids(num_items + 2), titles(num_items)
    genres = [genres_of(k, ML1M_GENRES + ("IMAX",)) for k in range(len(ids))]
    genres[-1] = "(no genres listed)"
    movies = "".join(f"{m},{_csv_field(names[k])},{genres[k]}\n" for k, m in enumerate(ids))
    (folder / "movies.csv").write_text("movieId,title,genres\n" + movies, encoding="utf-8")
    return folder


WRITERS = {
    "ml-1m": write_ml1m,
    "ml-10m": write_ml10m,
    "ml-20m": lambda root, **kw: write_csv_release(root, "ml-20m", **kw),
    "ml-25m": lambda root, **kw: write_csv_release(root, "ml-25m", **kw),
    "ml-32m": lambda root, **kw: write_csv_release(root, "ml-32m", **kw),
    "ml-latest-small": lambda root, **kw: write_csv_release(root, "ml-latest-small", **kw),
}


def archive_of(folder: Path, archive: Path) -> bytes:
    """Zip ``folder`` as the GroupLens archive does (``<folder name>/...``); return the bytes."""
    return zip_folder(folder, archive)
