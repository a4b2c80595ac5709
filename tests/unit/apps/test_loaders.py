"""Loaders: CSV, Parquet and the MovieLens layout, on real files; missing files and columns are named."""

from __future__ import annotations

import doctest
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from matinee.apps.recs import Interactions
from matinee.apps.recs import loaders as module_under_test
from matinee.apps.recs.loaders import load_csv, load_movielens, load_parquet
from matinee.errors import ParameterError

MOVIELENS = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "ml-latest-small"

RATINGS = """userId,movieId,rating,timestamp
1,1,4.0,964982703
1,3,3.5,964981247
2,1,5.0,964982224
2,2,2.0,964983815
3,3,4.5,964982931
"""
MOVIES = """movieId,title,genres
1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy
2,"American President, The (1995)",Comedy|Drama|Romance
3,Grumpier Old Men (1995),Comedy|Romance
4,Some Short (2018),(no genres listed)
"""


@pytest.fixture
def movielens(tmp_path: Path) -> Path:
    folder = tmp_path / "ml"
    folder.mkdir()
    (folder / "ratings.csv").write_text(RATINGS)
    (folder / "movies.csv").write_text(MOVIES)
    return folder


def test_load_csv_with_named_columns(tmp_path: Path):
    path = tmp_path / "plays.csv"
    pd.DataFrame({"member": ["b", "a", "a"], "title": [7, 7, 8], "ts": [3, 1, 2], "w": [1.0, 2.0, 0.5]}).to_csv(
        path, index=False)
    data = load_csv(path, user_col="member", item_col="title", time_col="ts", weight_col="w")
    assert isinstance(data, Interactions)
    assert data.user_ids.tolist() == ["a", "b"] and data.item_ids.tolist() == [7, 8]
    assert data.matrix.toarray().tolist() == [[2.0, 0.5], [1.0, 0.0]]
    assert data.timestamps.tolist() == [3.0, 1.0, 2.0]


def test_load_parquet_round_trips_a_frame(tmp_path: Path):
    frame = pd.DataFrame({"user_id": [1, 1, 2], "item_id": ["x", "y", "x"],
                          "timestamp": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"]),
                          "rating": [5, 2, 4]})
    path = tmp_path / "log.parquet"
    frame.to_parquet(path)
    data = load_parquet(path, rating_col="rating", min_rating=4)
    assert len(data) == 2 and data.item_ids.tolist() == ["x"]
    assert np.diff(data.timestamps).tolist() == [2 * 86400.0]


def test_load_movielens_reads_both_files(movielens: Path):
    data = load_movielens(movielens)
    assert (data.n_users, data.n_items, len(data)) == (3, 3, 5)
    assert data.user_ids.tolist() == [1, 2, 3] and data.item_ids.tolist() == [1, 2, 3]
    assert data.timestamps[0] == 964982703.0
    meta = data.item_metadata
    assert list(meta.columns) == ["title", "genres"] and meta.index.name == "movieId"
    assert meta.loc[2, "title"] == "American President, The (1995)"
    assert meta.loc[1, "genres"] == ["Adventure", "Animation", "Children", "Comedy", "Fantasy"]
    assert meta.loc[4, "genres"] == []  # kept though never rated; "(no genres listed)" is no genre


def test_load_movielens_min_rating_keeps_positives(movielens: Path):
    data = load_movielens(movielens, min_rating=4.0)
    assert data.to_frame()[["user_id", "item_id"]].values.tolist() == [[1, 1], [2, 1], [3, 3]]
    assert (data.weights == 1).all()


def _without(folder: Path, name: str) -> Path:
    (folder / name).unlink()
    return folder


def _rewrite(folder: Path, name: str, text: str) -> Path:
    (folder / name).write_text(text)
    return folder


BAD = [
    (lambda d, t: load_movielens(t / "nowhere"), "no MovieLens directory", "directory"),
    (lambda d, t: load_movielens(_without(d, "ratings.csv")), "ratings.csv is missing", "directory"),
    (lambda d, t: load_movielens(_without(d, "movies.csv")), "movies.csv is missing", "directory"),
    (lambda d, t: load_movielens(_rewrite(d, "ratings.csv", "userId,movieId,score,timestamp\n1,1,4,5\n")),
     "ratings.csv has no column 'rating'", "rating"),
    (lambda d, t: load_movielens(_rewrite(d, "movies.csv", "movieId,name,genres\n1,a,b\n")),
     "movies.csv has no column 'title'", "title"),
    (lambda d, t: load_movielens(_rewrite(d, "ratings.csv", "userId,movieId,rating,timestamp\n1,x,4,5\n")),
     "ratings.csv has a value of the wrong type", "directory"),
    (lambda d, t: load_movielens(d, min_rating=6), "no interactions left", "frame"),
    (lambda d, t: load_csv(t / "missing.csv"), "no file at", "path"),
    (lambda d, t: load_csv(d / "ratings.csv"), "column 'user_id' is missing", "user_id"),
    (lambda d, t: load_csv(d / "ratings.csv", user_col="userId", item_col="movieId", weight_col="w"),
     "column 'w' is missing", "w"),
    (lambda d, t: load_parquet(t / "missing.parquet"), "no file at", "path"),
]


@pytest.mark.parametrize(("call", "message", "parameter"), BAD)
def test_missing_files_and_columns_are_named(movielens: Path, tmp_path: Path, call, message, parameter):
    with pytest.raises(ParameterError, match=message) as info:
        call(movielens, tmp_path)
    assert info.value.parameter == parameter


@pytest.mark.skipif(not MOVIELENS.is_dir(), reason=f"MovieLens data not found at {MOVIELENS}")
def test_real_ml_latest_small():
    everything = load_movielens(MOVIELENS)
    assert (everything.n_users, everything.n_items, len(everything)) == (610, 9724, 100836)
    assert len(everything.item_metadata) == 9742
    assert everything.item_metadata.loc[1, "title"] == "Toy Story (1995)"
    positives = load_movielens(MOVIELENS, min_rating=4.0)
    assert (positives.n_users, positives.n_items, len(positives)) == (609, 6298, 48580)
    assert positives.matrix.nnz == 48580  # one rating per user and movie


def test_docstring_examples_run():
    result = doctest.testmod(module_under_test, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
