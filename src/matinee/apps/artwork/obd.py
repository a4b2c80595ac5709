"""Read the Open Bandit Dataset's CSV layout into :class:`~matinee.apps.artwork.data.LoggedFeedback`.

The dataset (Saito et al., 2020) logs item recommendations on a fashion
e-commerce site under two policies, uniform random (``random``) and Bernoulli
Thompson sampling (``bts``), in three campaigns (``all``, ``men``,
``women``). Its directory holds ``{behavior_policy}/{campaign}/{campaign}.csv``
(one row per impression: ``timestamp, item_id, position, click,
propensity_score``, hashed ``user_feature_*`` and ``user-item_affinity_*``) and
``item_context.csv`` next to it (``item_id`` and ``item_feature_0..3``).

The preprocessing is Open Bandit Pipeline's ``OpenBanditDataset``, so
estimates computed on the result compare with its numbers:

- rows sorted by ``timestamp``;
- ``action`` = ``item_id``, ``reward`` = ``click``, ``propensity`` =
  ``propensity_score``, ``position`` = the dense rank of ``position`` minus 1
  (0, 1, 2 for left, centre, right);
- ``context`` = the ``user_feature_*`` columns one-hot encoded with the first
  category of each dropped (``pandas.get_dummies(..., drop_first=True)``);
  ``include_affinity=True`` appends the ``user-item_affinity_*`` columns;
- ``action_features`` = ``item_feature_1..3`` label-encoded (codes of the sorted
  categories), then ``item_feature_0``, one row per item.

Nothing is downloaded: the files must be on disk.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from matinee.apps.artwork.data import LoggedFeedback
from matinee.errors import ParameterError

__all__ = ["load_obd"]

BEHAVIOR_POLICIES = ("random", "bts")
CAMPAIGNS = ("all", "men", "women")
_LOG_COLUMNS = ("timestamp", "item_id", "position", "click", "propensity_score")


def load_obd(
    directory: str | Path,
    behavior_policy: str = "random",
    campaign: str = "all",
    *,
    include_affinity: bool = False,
) -> LoggedFeedback:
    """Load one behaviour policy and campaign of the Open Bandit Dataset.

    Parameters
    ----------
    directory
        The dataset's root, holding ``random/`` and ``bts/``.
    behavior_policy
        ``"random"`` (uniform, propensity 1 / n_items) or ``"bts"`` (Bernoulli Thompson sampling).
    campaign
        ``"all"``, ``"men"`` or ``"women"``.
    include_affinity
        Append the user-item affinity columns to the context.

    Returns
    -------
    LoggedFeedback
        With ``position``, ``timestamp`` (seconds since the epoch), ``item_id``, shared
        ``action_features`` ``(n_items, 4)``, and ``policy`` set to ``behavior_policy``.

    Raises
    ------
    ParameterError
        For an unknown policy or campaign, a missing file or a missing column (named).

    Examples
    --------
    A two-impression log in the dataset's layout:

    >>> import tempfile
    >>> from pathlib import Path
    >>> from matinee.apps.artwork.obd import load_obd
    >>> root = Path(tempfile.mkdtemp())
    >>> (root / "random" / "men").mkdir(parents=True)
    >>> _ = (root / "random" / "men" / "men.csv").write_text(
    ...     ",timestamp,item_id,position,click,propensity_score,user_feature_0\\n"
    ...     "0,2019-11-24 00:00:01+00:00,1,1,0,0.5,aa\\n"
    ...     "1,2019-11-24 00:00:02+00:00,0,3,1,0.5,bb\\n")
    >>> _ = (root / "random" / "men" / "item_context.csv").write_text(
    ...     ",item_id,item_feature_0,item_feature_1\\n0,0,-0.5,x\\n1,1,0.25,y\\n")
    >>> log = load_obd(root, "random", "men")
    >>> log.action, log.position, log.context.ravel(), log.reward
    (array([1, 0]), array([0, 1]), array([0., 1.]), array([0., 1.]))
    >>> log.action_features
    array([[ 0.  , -0.5 ],
           [ 1.  ,  0.25]])
    >>> load_obd(root, "random", "women")
    Traceback (most recent call last):
    ...
    matinee.errors.ParameterError: Open Bandit Dataset file(s) not found: ...
    >>> import shutil; shutil.rmtree(root)
    """
    if behavior_policy not in BEHAVIOR_POLICIES:
        raise ParameterError(f"behavior_policy must be one of {', '.join(BEHAVIOR_POLICIES)}, not "
                             f"{behavior_policy!r}", parameter="behavior_policy")
    if campaign not in CAMPAIGNS:
        raise ParameterError(f"campaign must be one of {', '.join(CAMPAIGNS)}, not {campaign!r}",
                             parameter="campaign")
    folder = Path(directory) / behavior_policy / campaign
    log_path, item_path = folder / f"{campaign}.csv", folder / "item_context.csv"
    missing = [str(p) for p in (log_path, item_path) if not p.is_file()]
    if missing:
        raise ParameterError(f"Open Bandit Dataset file(s) not found: {', '.join(missing)}",
                             parameter="directory", missing=missing)
    data = pd.read_csv(log_path, index_col=0)
    items = pd.read_csv(item_path, index_col=0)
    _require(data, _LOG_COLUMNS, log_path)
    _require(items, ("item_id", "item_feature_0"), item_path)
    user_cols = [c for c in data.columns if "user_feature" in str(c)]
    if not user_cols:
        raise ParameterError(f"{log_path} has no user_feature_* columns", parameter="user_feature")

    data = data.sort_values("timestamp")
    action = data["item_id"].to_numpy()
    n_items = len(items)
    if not np.array_equal(np.sort(items["item_id"].to_numpy()), np.arange(n_items)):
        raise ParameterError(f"{item_path}: item_id must be 0..{n_items - 1}", parameter="item_id")
    if len(action) and (action.min() < 0 or action.max() >= n_items):
        raise ParameterError(f"{log_path}: item_id {int(action.max())} has no row in {item_path}",
                             parameter="item_id")
    position = np.unique(data["position"].to_numpy(), return_inverse=True)[1].reshape(-1)

    context = pd.get_dummies(data[user_cols].astype(str), drop_first=True).to_numpy(np.float64)
    if include_affinity:
        affinity = [c for c in data.columns if str(c).startswith("user-item_affinity")]
        context = np.hstack([context, data[affinity].to_numpy(np.float64)])

    items = items.sort_values("item_id")
    categorical = [c for c in items.columns if c not in ("item_id", "item_feature_0")]
    codes = [np.unique(items[c].astype(str).to_numpy(), return_inverse=True)[1].reshape(-1) for c in categorical]
    action_features = np.column_stack([*codes, items["item_feature_0"].to_numpy(np.float64)]).astype(np.float64)

    timestamp = pd.to_datetime(data["timestamp"], utc=True)
    seconds = (timestamp - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()
    return LoggedFeedback(
        context=context,
        action=action,
        reward=data["click"].to_numpy(np.float64),
        propensity=data["propensity_score"].to_numpy(np.float64),
        n_actions=n_items,
        action_features=action_features,
        position=position.astype(np.int64),
        timestamp=seconds,
        item_id=action.copy(),
        policy=behavior_policy,
        policy_version=campaign,
    )


def _require(frame: pd.DataFrame, columns: tuple[str, ...], path: Path) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ParameterError(f"{path} lacks column(s) {', '.join(missing)}", parameter=missing[0],
                             missing=missing)
