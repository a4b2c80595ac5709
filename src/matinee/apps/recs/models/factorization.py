"""``ALS`` and ``BPR``: matrix factorisation on the ``implicit`` library's CPU kernels.

``implicit`` is imported only inside ``fit``. Its model object is dropped as
soon as the factors are copied out, and scores are computed here in numpy
(``user_factors_[users] @ item_factors_.T``), so a fitted model pickles as
plain arrays and loads without ``implicit``. With the same settings and seed
the factors are those of calling ``implicit`` directly (bit for bit with one
thread). The fit keeps the BLAS thread pool at one thread while ``implicit``
runs its own threads, as ``implicit`` itself recommends: a multi-threaded BLAS
underneath them slows ALS several-fold.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import scipy.sparse as sp

from matinee.apps.recs.base import RecommenderBase
from matinee.apps.recs.models import _params
from matinee.errors import ConfigError
from matinee.progress import progress


class MatrixFactorizationModel(RecommenderBase):
    """Shared scoring of factor models: ``scores = user_factors_[users] @ item_factors_.T``.

    ``similar_items`` ranks by the cosine between item factor vectors.
    """

    user_factors_: np.ndarray
    item_factors_: np.ndarray

    def _score(self, users: np.ndarray) -> np.ndarray:
        return np.asarray(self.user_factors_[users] @ self.item_factors_.T, dtype=np.float32)

    def _similar(self, items: np.ndarray) -> np.ndarray:
        norms = np.linalg.norm(self.item_factors_, axis=1)
        unit = self.item_factors_ / np.where(norms > 0, norms, 1.0)[:, None]
        return np.asarray(unit[items] @ unit.T, dtype=np.float32)

    def _run_implicit(self, module: str, name: str, matrix: sp.csr_matrix, iterations: int,
                      **settings: Any) -> None:
        try:
            from threadpoolctl import threadpool_limits

            implicit_class = getattr(importlib.import_module(module), name)
        except ImportError as exc:
            raise ConfigError(f"{type(self).__name__} needs the 'implicit' package: pip install implicit "
                              f"({exc})", module="implicit") from exc
        ticks: Iterator[int] = progress(range(iterations), f"fitting {type(self).__name__}")
        next(ticks, None)
        try:
            with threadpool_limits(limits=1, user_api="blas"):
                fitted = implicit_class(iterations=iterations, dtype=np.float32, **settings)
                # a copy: implicit may sort the matrix's indices in place, and the data is the caller's
                fitted.fit(matrix.copy(), show_progress=False, callback=lambda *_: next(ticks, None))
        finally:
            ticks.close()  # type: ignore[attr-defined]
        self.user_factors_ = np.array(fitted.user_factors, dtype=np.float32, order="C")
        self.item_factors_ = np.array(fitted.item_factors, dtype=np.float32, order="C")


class ALS(MatrixFactorizationModel):
    """Implicit-feedback alternating least squares (Hu, Koren and Volinsky, 2008).

    Factorises the training matrix into user and item factors, treating every
    interaction as a positive with confidence ``alpha * weight`` and every other
    cell as a weak negative; fitted with ``implicit``'s conjugate-gradient solver.

    Parameters
    ----------
    factors : int, default 64
        Length of the latent vectors.
    regularization : float, default 10.0
        L2 penalty on the factors (``>= 0``). ``implicit`` does not scale it
        by the number of interactions, so sensible values grow with the data;
        10 suits MovieLens-sized data with 0/1 weights.
    alpha : float, default 1.0
        Confidence scale applied to the interaction weights (``> 0``).
    iterations : int, default 15
        Alternating sweeps over users and items.
    random_state : int, numpy.random.Generator or None, default None
        Seeds the initial factors; with a fixed seed the fit is reproducible.
    num_threads : int, default 0
        Threads for the solver; ``0`` uses every core.

    Attributes
    ----------
    user_factors_ : numpy.ndarray
        ``(n_users, factors)`` float32.
    item_factors_ : numpy.ndarray
        ``(n_items, factors)`` float32.

    Examples
    --------
    >>> import pandas as pd
    >>> from matinee.apps.recs import Interactions
    >>> from matinee.apps.recs.models import ALS
    >>> log = pd.DataFrame({"user_id": [1, 1, 2, 2, 3, 3, 4],
    ...                     "item_id": ["a", "b", "a", "b", "b", "c", "a"]})
    >>> model = ALS(factors=4, iterations=5, random_state=0).fit(Interactions.from_frame(log))
    >>> model.user_factors_.shape, model.item_factors_.shape
    ((4, 4), (3, 4))
    >>> model.recommend([4], k=1).items.tolist()
    [['b']]
    """

    def __init__(
        self,
        *,
        factors: int = 64,
        regularization: float = 10.0,
        alpha: float = 1.0,
        iterations: int = 15,
        random_state: int | np.random.Generator | None = None,
        num_threads: int = 0,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.random_state = random_state
        self.num_threads = num_threads

    def _fit(self, matrix: sp.csr_matrix) -> None:
        self._run_implicit(
            "implicit.cpu.als", "AlternatingLeastSquares", matrix,
            iterations=_params.whole(self, "iterations", self.iterations),
            factors=_params.whole(self, "factors", self.factors),
            regularization=_params.real(self, "regularization", self.regularization),
            alpha=_params.real(self, "alpha", self.alpha, strict=True),
            random_state=_params.random_state(self, self.random_state),
            num_threads=_params.whole(self, "num_threads", self.num_threads, minimum=0),
        )


class BPR(MatrixFactorizationModel):
    """Bayesian personalised ranking (Rendle et al., 2009) by stochastic gradient descent.

    Learns factors so that each user scores items they interacted with above
    items sampled as negatives; interaction weights are ignored (any stored
    interaction is a positive). As in ``implicit``, the last factor column is
    an item bias (the users' last column is fixed at 1).

    Parameters
    ----------
    factors : int, default 64
        Length of the latent vectors (plus one bias column).
    learning_rate : float, default 0.003
        SGD step size (``> 0``).
    regularization : float, default 0.01
        L2 penalty on the factors (``>= 0``).
    iterations : int, default 200
        Epochs, each drawing as many samples as there are interactions.
    random_state : int, numpy.random.Generator or None, default None
        Seeds the initial factors and the sampling.
    num_threads : int, default 1
        SGD threads. More threads are faster but update the factors without
        locks, so results then differ run to run even with a fixed
        ``random_state``; the default single thread is reproducible.

    Attributes
    ----------
    user_factors_ : numpy.ndarray
        ``(n_users, factors + 1)`` float32.
    item_factors_ : numpy.ndarray
        ``(n_items, factors + 1)`` float32.

    Examples
    --------
    >>> import pandas as pd
    >>> from matinee.apps.recs import Interactions
    >>> from matinee.apps.recs.models import BPR
    >>> log = pd.DataFrame({"user_id": [1, 1, 2, 2, 3, 3, 4],
    ...                     "item_id": ["a", "b", "a", "b", "b", "c", "a"]})
    >>> model = BPR(factors=4, random_state=0).fit(Interactions.from_frame(log))
    >>> model.item_factors_.shape
    (3, 5)
    """

    def __init__(
        self,
        *,
        factors: int = 64,
        learning_rate: float = 0.003,
        regularization: float = 0.01,
        iterations: int = 200,
        random_state: int | np.random.Generator | None = None,
        num_threads: int = 1,
    ) -> None:
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.iterations = iterations
        self.random_state = random_state
        self.num_threads = num_threads

    def _fit(self, matrix: sp.csr_matrix) -> None:
        self._run_implicit(
            "implicit.cpu.bpr", "BayesianPersonalizedRanking", matrix,
            iterations=_params.whole(self, "iterations", self.iterations),
            factors=_params.whole(self, "factors", self.factors),
            learning_rate=_params.real(self, "learning_rate", self.learning_rate, strict=True),
            regularization=_params.real(self, "regularization", self.regularization),
            random_state=_params.random_state(self, self.random_state),
            num_threads=_params.whole(self, "num_threads", self.num_threads, minimum=0),
        )
