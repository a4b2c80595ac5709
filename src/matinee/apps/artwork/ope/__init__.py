"""Off-policy evaluation: how would a new policy do on the logs of the old one?

Every estimator has one interface::

    estimate(feedback, pi_e, reward_model=None, *, n_bootstrap=1000, level=0.95,
             random_state=None) -> Estimate

taking the log (:class:`~matinee.apps.artwork.data.LoggedFeedback`), the
evaluation policy's action distribution ``pi_e`` (``(n, n_actions)``, e.g.
``Policy.probabilities``, or ``(n, n_actions, n_positions)`` as Open Bandit
Pipeline lays it out, of which each round uses its own position), and for the
model-based estimators a reward model. With ``w_i = pi_e(a_i | x_i) /
propensity_i``, ``q_hat`` the reward model's predictions and ``dm_i = sum_a
pi_e(a | x_i) q_hat(x_i, a)``:

==========  =====================================================  ===========================
estimator   value                                                  hyperparameters
==========  =====================================================  ===========================
IPS         ``mean(w r)``                                          ``clip``
SNIPS       ``sum(w r) / sum(w)``                                  ``clip``
DM          ``mean(dm)``
DR          ``mean(dm + w (r - q_hat(x, a)))``                     ``clip``
SNDR        ``mean(dm) + sum(w (r - q_hat(x, a))) / sum(w)``       ``clip``
Switch-DR   DR with ``w`` set to 0 where ``w > tau``               ``tau``
Replay      mean reward where pi_e's action equals the logged one  ``policy_action``
==========  =====================================================  ===========================

These match Open Bandit Pipeline 0.5.7's estimators on the same inputs to
floating-point precision (``clip`` is its ``lambda_`` for IPS and DR, ``tau``
its ``lambda_`` for Switch-DR).

Each returns an :class:`Estimate`: the value, a percentile bootstrap interval,
the per-round contributions, and weight diagnostics (Kish effective sample
size, largest and mean weight, share of weights above a threshold).

The bootstrap resamples rounds with replacement as count vectors rather than
copies, so IPS-type intervals cost a matrix product. For DM, DR, SNDR and
Switch-DR given a reward *model*, every resample **refits** the model
(cross-fitted, on that resample) — leaving the model fixed, as Open Bandit
Pipeline does, ignores its estimation error and gives intervals that are too
narrow. :class:`~matinee.apps.artwork.reward_models.RidgeRewardModel` refits a
whole batch of resamples at once from sufficient statistics; any other model is
refitted resample by resample. Given fixed predictions ``q_hat`` instead, the
interval does not refit (``Estimate.refit`` is False).
"""

from matinee.apps.artwork.ope._base import Estimate
from matinee.apps.artwork.ope.estimators import (
    DM,
    DR,
    IPS,
    SNDR,
    SNIPS,
    OffPolicyEstimator,
    Replay,
    SwitchDR,
    evaluate,
)

__all__ = ["DM", "DR", "IPS", "SNDR", "SNIPS", "Estimate", "OffPolicyEstimator", "Replay", "SwitchDR", "evaluate"]
