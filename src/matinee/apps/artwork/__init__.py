"""Artwork personalization: logged-feedback contracts, bandit policies, off-policy evaluation."""

from matinee.apps.artwork.data import Decision, LoggedFeedback
from matinee.apps.artwork.policy import Choice, Policy

__all__ = ["Choice", "Decision", "LoggedFeedback", "Policy"]
