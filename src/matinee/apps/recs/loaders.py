"""Loading interaction logs from files: CSV, Parquet and the MovieLens layout.

Nothing is downloaded: every loader reads files already on disk, and a
missing file or column raises a :class:`~matinee.errors.ParameterError` that
names it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from matinee.apps.recs.interactions import Interactions
from matinee.errors import ParameterError

__all__ = ["load_csv", "load_movielens", "load_parquet"]

RATINGS = "ratings.csv"
MOVIES = "movies.csv"
RATING_COLUMNS = {"userId": "int64", "movieId": "int64", "rating": "float64", "timestamp": "int64"}
MOVIE_COLUMNS = {"movieId": "int64", "title": "object", "genres": "object"}
NO_GENRES = "(no genres listed)"


def load_csv(path: str | Path, **columns: Any) -> Interactions:
    """Read an interaction log from a CSV file.

    Parameters
    ----------
    path
        The file; one row per interaction.
    **columns
        Passed to :meth:`Interactions.from_frame`: ``user_col``, ``item_col``,
        ``time_col``, ``weight_col``, ``rating_col``, ``min_rating``,
        ``item_metadata``. The defaults expect ``user_id``, ``item_id`` and
        (optionally) ``timestamp`` columns.

    Returns
    -------
    Interactions

    Raises
    ------
    ParameterError
        No file at ``path``, or a missing or invalid column (named).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "plays.csv"
    >>> _ = path.write_text("member,title,ts\\nann,10,1\\nann,11,2\\nbob,10,3\\n")
    >>> load_csv(path, user_col="member", item_col="title", time_col="ts")
    Interactions(2 users, 2 items, 3 interactions)
    """
    return Interactions.from_csv(_file(path, "path"), **columns)


def load_parquet(path: str | Path, **columns: Any) -> Interactions:
    """Read an interaction log from a Parquet file (or a directory of them).

    Parameters
    ----------
    path
        The file or dataset directory; one row per interaction.
    **columns
        Passed to :meth:`Interactions.from_frame`, as for :func:`load_csv`.

    Returns
    -------
    Interactions

    Raises
    ------
    ParameterError
        Nothing at ``path``, or a missing or invalid column (named).

    Examples
    --------
    >>> import tempfile, pathlib, pandas as pd
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "plays.parquet"
    >>> pd.DataFrame({"user_id": [1, 1, 2], "item_id": ["a", "b", "a"]}).to_parquet(path)
    >>> load_parquet(path)
    Interactions(2 users, 2 items, 3 interactions)
    """
    path = Path(path)
    if not path.exists():
        raise ParameterError(f"no file at {path}", parameter="path")
    return Interactions.from_parquet(path, **columns)


def load_movielens(directory: str | Path, min_rating: float | None = None) -> Interactions:
    """Read a MovieLens dataset of the ml-latest family (ml-latest-small, ml-latest, ml-32m, ...).

    The directory holds ``ratings.csv`` (``userId,movieId,rating,timestamp``)
    and ``movies.csv`` (``movieId,title,genres``). Users and items keep their
    MovieLens ids; timestamps are Unix seconds. Movie titles and genres become
    the item metadata, indexed by ``movieId``, with ``genres`` split on ``|``
    into a list (``"(no genres listed)"`` becomes an empty list).

    Parameters
    ----------
    directory
        The unpacked dataset folder; nothing is downloaded.
    min_rating
        Keep only ratings at least this high as interactions (the usual
        positive-feedback rule is ``min_rating=4.0``); by default every rating
        is an interaction. Weights are 1 either way.

    Returns
    -------
    Interactions

    Raises
    ------
    ParameterError
        The directory or one of the two files is missing (named), a file lacks
        a column (named), or ``min_rating`` leaves no rating.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "ratings.csv").write_text(
    ...     "userId,movieId,rating,timestamp\\n1,1,4.0,964982703\\n1,2,2.5,964982931\\n2,1,5.0,964983815\\n")
    >>> _ = (folder / "movies.csv").write_text(
    ...     "movieId,title,genres\\n1,Toy Story (1995),Animation|Comedy\\n2,Jumanji (1995),Adventure\\n")
    >>> data = load_movielens(folder, min_rating=4.0)
    >>> data, data.item_metadata.loc[1, "genres"]
    (Interactions(2 users, 1 items, 2 interactions), ['Animation', 'Comedy'])
    """
    folder = Path(directory)
    if not folder.is_dir():
        raise ParameterError(f"no MovieLens directory at {folder}", parameter="directory")
    ratings = _read_csv(folder / RATINGS, RATING_COLUMNS)
    movies = _read_csv(folder / MOVIES, MOVIE_COLUMNS)
    genres = movies["genres"].fillna(NO_GENRES).astype(str).tolist()
    movies["genres"] = [[] if g == NO_GENRES else g.split("|") for g in genres]
    return Interactions.from_frame(
        ratings,
        user_col="userId",
        item_col="movieId",
        time_col="timestamp",
        rating_col="rating",
        min_rating=min_rating,
        item_metadata=movies,
    )


def _file(path: str | Path, parameter: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ParameterError(f"no file at {path}", parameter=parameter)
    return path


def _read_csv(path: Path, columns: dict[str, str]) -> pd.DataFrame:
    if not path.is_file():
        raise ParameterError(f"{path.name} is missing from {path.parent}", parameter="directory", file=path.name)
    header = pd.read_csv(path, nrows=0).columns
    missing = [c for c in columns if c not in header]
    if missing:
        raise ParameterError(
            f"{path.name} has no column {missing[0]!r}; it has {', '.join(map(str, header))}",
            parameter=missing[0], file=path.name,
        )
    frame = pd.read_csv(path, usecols=list(columns), engine="pyarrow")
    try:
        return frame.astype(columns)
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"{path.name} has a value of the wrong type: {exc}", file=path.name,
                             parameter="directory") from None
