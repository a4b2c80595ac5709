"""Public conformance suites: the same checks for every implementation of a contract.

Like scikit-learn's ``check_estimator``: a model written outside matinee runs
the very checks matinee's own models pass.

>>> from matinee.testing import check_recommender
>>> from matinee.apps.recs.models import MostPopular
>>> check_recommender(MostPopular)
"""

from matinee.testing.policies import check_policy, policy_checks, sample_feedback
from matinee.testing.recommenders import check_recommender, recommender_checks, sample_interactions

__all__ = [
    "check_policy",
    "check_recommender",
    "policy_checks",
    "recommender_checks",
    "sample_feedback",
    "sample_interactions",
]
