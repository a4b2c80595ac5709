"""The joint feature map of matinee's linear policies: an action's features and their products with the context.

A linear model of the reward of action ``a`` in a round with context ``x``
(``d`` features) and action features ``z_a`` (``k`` features) is linear in

    ``[1, z_a, x (x) z_a]``

the intercept (optional), the action's features, and the outer product of the
context with them, flattened context-major (entry ``j * k + l`` is
``x_j * z_al``). That is ``1 + k + d * k`` features. It can represent a reward
whose log-odds are ``c + z_a . w(x)`` with weights ``w`` that depend linearly on
the context, as the artwork simulator's do. When the actions have no features,
one-hot action features (``numpy.eye(n_actions)``) turn the same map into one
linear model of the context per action.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from matinee.errors import ParameterError


def n_joint_features(n_context_features: int, n_action_features: int, *, intercept: bool = True) -> int:
    """The width ``p`` of :func:`joint_features`: ``intercept + k + d * k``.

    Parameters
    ----------
    n_context_features
        ``d``, the context's features.
    n_action_features
        ``k``, each action's features.
    intercept
        Whether the leading constant column is counted.

    Returns
    -------
    int
        The number of joint features.

    Examples
    --------
    >>> n_joint_features(20, 5)
    106
    >>> n_joint_features(20, 5, intercept=False)
    105
    """
    return int(intercept) + n_action_features + n_context_features * n_action_features


def joint_features(context: Any, action_features: Any, *, intercept: bool = True) -> np.ndarray:
    """The joint features of every (round, action): ``[1, z, x (x) z]``, shape ``(n, n_actions, p)``.

    Parameters
    ----------
    context
        ``(n, d)`` context features, one row per round.
    action_features
        ``(n_actions, k)`` features shared by every round, or ``(n, n_actions, k)``
        per round.
    intercept
        Whether to start each row with a constant 1.

    Returns
    -------
    numpy.ndarray
        ``(n, n_actions, p)`` float64 with ``p = intercept + k + d * k``: the
        intercept, then ``z``, then the outer product ``x (x) z`` flattened
        context-major (column ``intercept + k + j * k + l`` is ``x_j * z_l``).

    Raises
    ------
    ParameterError
        ``context`` is not ``(n, d)``, ``action_features`` is not ``(n_actions, k)``
        or ``(n, n_actions, k)``, or either holds a NaN or infinite value.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[2.0, 3.0]])
    >>> z = np.array([[1.0, -1.0], [0.5, 0.0]])
    >>> joint_features(x, z)[0]
    array([[ 1. ,  1. , -1. ,  2. , -2. ,  3. , -3. ],
           [ 1. ,  0.5,  0. ,  1. ,  0. ,  1.5,  0. ]])
    >>> joint_features(x, z, intercept=False).shape
    (1, 2, 6)
    """
    x = np.asarray(context, dtype=np.float64)
    if x.ndim != 2:
        raise ParameterError(f"context must have shape (n, d), not {x.shape}", parameter="context")
    z = np.asarray(action_features, dtype=np.float64)
    n, d = x.shape
    if z.ndim == 2:
        z = z[None]
    elif z.ndim != 3 or len(z) != n:
        raise ParameterError(f"action_features must have shape (n_actions, k) or ({n}, n_actions, k), "
                             f"not {z.shape}", parameter="action_features")
    for name, array in (("context", x), ("action_features", z)):
        if not np.isfinite(array).all():
            raise ParameterError(f"{name} has a NaN or infinite value", parameter=name)
    n_actions, k = z.shape[1:]
    start = int(intercept)
    out = np.empty((n, n_actions, n_joint_features(d, k, intercept=intercept)))
    if intercept:
        out[..., 0] = 1.0
    out[..., start:start + k] = z
    outer = out[..., start + k:].reshape(n, n_actions, d, k)  # a view: splits the contiguous last axis
    # one broadcast product per index of the shorter axis: several times faster than one 4-d broadcast
    if d <= k:
        for j in range(d):
            np.multiply(z, x[:, None, j:j + 1], out=outer[:, :, j, :])
    else:
        for col in range(k):
            np.multiply(x[:, None, :], z[:, :, col:col + 1], out=outer[:, :, :, col])
    return out
