"""Artwork personalization: logged-feedback contracts, bandit policies, off-policy evaluation, online simulation.

>>> from matinee.apps.artwork import LinearTS, DR, simulate
"""

from matinee.apps.artwork.data import Decision, LoggedFeedback
from matinee.apps.artwork.obd import load_obd
from matinee.apps.artwork.online import simulate
from matinee.apps.artwork.ope import DM, DR, IPS, SNDR, SNIPS, Estimate, Replay, SwitchDR, evaluate
from matinee.apps.artwork.policies import (
    BernoulliTS,
    EpsilonGreedy,
    LinearTS,
    LinUCB,
    LogisticTS,
    Softmax,
    UniformRandom,
)
from matinee.apps.artwork.policy import Choice, Policy
from matinee.apps.artwork.reward_models import LogisticRewardModel, RidgeRewardModel

__all__ = [
    "DM",
    "DR",
    "IPS",
    "SNDR",
    "SNIPS",
    "BernoulliTS",
    "Choice",
    "Decision",
    "EpsilonGreedy",
    "Estimate",
    "LinUCB",
    "LinearTS",
    "LoggedFeedback",
    "LogisticRewardModel",
    "LogisticTS",
    "Policy",
    "Replay",
    "RidgeRewardModel",
    "Softmax",
    "SwitchDR",
    "UniformRandom",
    "evaluate",
    "load_obd",
    "simulate",
]
