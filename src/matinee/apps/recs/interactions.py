"""``Interactions``: who played what, when, as id maps plus a sparse matrix.

An :class:`Interactions` holds

* ``user_ids`` / ``item_ids``: the external ids (any hashable values), whose
  positions are the internal indices every model and metric works with;
* the event log, one row per interaction: ``users``, ``items`` (internal
  indices), ``weights`` and ``timestamps``;
* ``matrix``: a users x items CSR matrix of summed weights, built on first use;
* optional ``item_metadata`` (title, genres, ...) indexed by external item id.

Splits keep the id maps of the whole log, so a train and a test part index the
same users and items. Construction validates everything and names the column
at fault.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from matinee.errors import ParameterError

USER, ITEM, TIME = "user_id", "item_id", "timestamp"


@dataclass(frozen=True, eq=False)
class Interactions:
    """An interaction log over fixed user and item id maps.

    Build it with :meth:`from_frame`, :meth:`from_csv` or :meth:`from_parquet`
    rather than directly.

    Examples
    --------
    >>> import pandas as pd
    >>> from matinee.apps.recs import Interactions
    >>> log = pd.DataFrame({"user_id": ["ann", "ann", "bob"], "item_id": [10, 11, 10],
    ...                     "timestamp": [1, 2, 3]})
    >>> data = Interactions.from_frame(log)
    >>> data.n_users, data.n_items, data.matrix.toarray().tolist()
    (2, 2, [[1.0, 1.0], [1.0, 0.0]])
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    users: np.ndarray
    items: np.ndarray
    weights: np.ndarray
    timestamps: np.ndarray | None = None
    item_metadata: pd.DataFrame | None = None
    _user_index: dict[Hashable, int] = field(default_factory=dict, repr=False)
    _item_index: dict[Hashable, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        n = len(self.users)
        for name in ("items", "weights"):
            if len(getattr(self, name)) != n:
                raise ParameterError(f"Interactions.{name} has {len(getattr(self, name))} rows, users has {n}",
                                     parameter=name)
        if self.timestamps is not None and len(self.timestamps) != n:
            raise ParameterError(f"Interactions.timestamps has {len(self.timestamps)} rows, users has {n}",
                                 parameter="timestamps")
        if n and (self.users.min() < 0 or self.users.max() >= len(self.user_ids)):
            raise ParameterError("Interactions.users holds indices outside user_ids", parameter="users")
        if n and (self.items.min() < 0 or self.items.max() >= len(self.item_ids)):
            raise ParameterError("Interactions.items holds indices outside item_ids", parameter="items")
        if not self._user_index:
            object.__setattr__(self, "_user_index", {u: i for i, u in enumerate(self.user_ids.tolist())})
        if not self._item_index:
            object.__setattr__(self, "_item_index", {v: i for i, v in enumerate(self.item_ids.tolist())})

    # -- construction -------------------------------------------------------------
    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        *,
        user_col: str = USER,
        item_col: str = ITEM,
        time_col: str | None = TIME,
        weight_col: str | None = None,
        rating_col: str | None = None,
        min_rating: float | None = None,
        item_metadata: pd.DataFrame | None = None,
    ) -> Interactions:
        """Build from a DataFrame with one row per interaction.

        Parameters
        ----------
        frame
            The log. Needs ``user_col`` and ``item_col``; ``time_col`` is used if
            present (pass ``None`` to ignore it).
        weight_col
            Column of non-negative weights; default 1 per row.
        rating_col, min_rating
            Keep only rows whose rating is at least ``min_rating`` (the usual
            "rating >= 4 is a positive" rule); the rating itself is not a weight.
        item_metadata
            A frame indexed by external item id (or with an ``item_col`` column),
            e.g. ``title`` and ``genres``; rows for unseen items are kept.

        Raises
        ------
        ParameterError
            A missing column, a missing id, a negative or missing weight, or no
            rows left; the message names the column.
        """
        if not isinstance(frame, pd.DataFrame):
            raise ParameterError(f"Interactions.from_frame takes a DataFrame, not {type(frame).__name__}",
                                 parameter="frame")
        needed = [user_col, item_col] + [c for c in (weight_col, rating_col) if c]
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise ParameterError(
                f"column {missing[0]!r} is missing; the frame has {', '.join(map(str, frame.columns))} "
                f"(name the columns with user_col=, item_col=, ...)",
                parameter=missing[0],
            )
        for col in (user_col, item_col):
            if frame[col].isna().any():
                row = int(np.flatnonzero(frame[col].isna().to_numpy())[0])
                raise ParameterError(f"column {col!r} has a missing id (first at row {row})", parameter=col)
        if min_rating is not None:
            if rating_col is None:
                raise ParameterError("min_rating needs rating_col=, the column holding the ratings",
                                     parameter="rating_col")
            frame = frame[frame[rating_col] >= min_rating]
        if weight_col is not None:
            weights = pd.to_numeric(frame[weight_col], errors="coerce").to_numpy(np.float32)
            if np.isnan(weights).any() or (weights < 0).any():
                raise ParameterError(f"column {weight_col!r} must hold non-negative numbers", parameter=weight_col)
        else:
            weights = np.ones(len(frame), np.float32)
        if not len(frame):
            raise ParameterError("no interactions left to build from (is the frame empty, or min_rating too high?)",
                                 parameter="frame")
        timestamps = None
        if time_col is not None and time_col in frame.columns:
            timestamps = _timestamps(frame[time_col], time_col)
        user_codes, user_ids = pd.factorize(frame[user_col], sort=True)
        item_codes, item_ids = pd.factorize(frame[item_col], sort=True)
        return cls(
            user_ids=np.asarray(user_ids),
            item_ids=np.asarray(item_ids),
            users=user_codes.astype(np.int32),
            items=item_codes.astype(np.int32),
            weights=weights,
            timestamps=timestamps,
            item_metadata=_item_metadata(item_metadata, item_col),
        )

    @classmethod
    def from_csv(cls, path: str | Path, **kwargs: Any) -> Interactions:
        """Read a CSV file (columns as for :meth:`from_frame`)."""
        return cls.from_frame(_read(path, pd.read_csv), **kwargs)

    @classmethod
    def from_parquet(cls, path: str | Path, **kwargs: Any) -> Interactions:
        """Read a Parquet file (columns as for :meth:`from_frame`)."""
        return cls.from_frame(_read(path, pd.read_parquet), **kwargs)

    # -- shape and lookups ---------------------------------------------------------
    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def __len__(self) -> int:
        return len(self.users)

    @property
    def shape(self) -> tuple[int, int]:
        return self.n_users, self.n_items

    @cached_property
    def matrix(self) -> sp.csr_matrix:
        """Users x items CSR matrix of summed weights (float32)."""
        m = sp.csr_matrix((self.weights, (self.users, self.items)), shape=self.shape, dtype=np.float32)
        m.sum_duplicates()
        return m

    def user_index(self, ids: Sequence[Hashable] | np.ndarray, missing: int | None = None) -> np.ndarray:
        """Internal indices of external user ids; an unknown id raises, or maps to ``missing``."""
        return _lookup(self._user_index, ids, missing, "user")

    def item_index(self, ids: Sequence[Hashable] | np.ndarray, missing: int | None = None) -> np.ndarray:
        """Internal indices of external item ids; an unknown id raises, or maps to ``missing``."""
        return _lookup(self._item_index, ids, missing, "item")

    # -- derived logs ----------------------------------------------------------------
    def subset(self, mask: np.ndarray) -> Interactions:
        """The interactions where ``mask`` is true, over the same id maps."""
        mask = np.asarray(mask, dtype=bool)
        return Interactions(
            user_ids=self.user_ids,
            item_ids=self.item_ids,
            users=self.users[mask],
            items=self.items[mask],
            weights=self.weights[mask],
            timestamps=None if self.timestamps is None else self.timestamps[mask],
            item_metadata=self.item_metadata,
            _user_index=self._user_index,
            _item_index=self._item_index,
        )

    def to_frame(self) -> pd.DataFrame:
        """The log with external ids: user_id, item_id, weight and timestamp when known."""
        out = {USER: self.user_ids[self.users], ITEM: self.item_ids[self.items], "weight": self.weights}
        if self.timestamps is not None:
            out[TIME] = self.timestamps
        return pd.DataFrame(out)

    @cached_property
    def dataset_hash(self) -> str:
        """A SHA-256 of the log and id maps: equal data, equal hash."""
        h = hashlib.sha256()
        for array in (self.users, self.items, self.weights, self.timestamps):
            if array is not None:
                h.update(np.ascontiguousarray(array).tobytes())
        for ids in (self.user_ids, self.item_ids):
            h.update(repr(ids.tolist()).encode())
        return h.hexdigest()

    def __repr__(self) -> str:
        return f"Interactions({self.n_users} users, {self.n_items} items, {len(self)} interactions)"


def _read(path: str | Path, reader: Any) -> pd.DataFrame:
    try:
        return reader(path)
    except FileNotFoundError:
        raise ParameterError(f"no file at {path}", parameter="path") from None


def _timestamps(column: pd.Series, name: str) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(column):
        values = column.to_numpy("datetime64[ns]").astype(np.int64) / 1e9
    else:
        values = pd.to_numeric(column, errors="coerce").to_numpy(np.float64)
    if np.isnan(values).any():
        raise ParameterError(f"column {name!r} must hold numbers or datetimes, with none missing", parameter=name)
    return np.asarray(values, dtype=np.float64)


def _item_metadata(meta: pd.DataFrame | None, item_col: str) -> pd.DataFrame | None:
    if meta is None:
        return None
    if item_col in meta.columns:
        meta = meta.set_index(item_col)
    return meta


def _lookup(index: dict[Hashable, int], ids: Any, missing: int | None, kind: str) -> np.ndarray:
    values = ids.tolist() if isinstance(ids, np.ndarray) else list(ids)
    if missing is None:
        try:
            return np.fromiter((index[v] for v in values), dtype=np.int64, count=len(values))
        except KeyError as exc:
            raise ParameterError(f"unknown {kind} id {exc.args[0]!r}", parameter=f"{kind}s") from None
    return np.fromiter((index.get(v, missing) for v in values), dtype=np.int64, count=len(values))
