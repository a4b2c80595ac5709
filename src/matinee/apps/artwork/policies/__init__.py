"""Contextual-bandit policies on one base class, :class:`~matinee.apps.artwork.policy.Policy`.

Every policy is batch-first: ``probabilities(context, action_features, candidates)``
gives the action distribution of each round, ``choose(...)`` draws an action per
round with its propensity, ``update(feedback)`` learns from a
:class:`~matinee.apps.artwork.data.LoggedFeedback`. ``__init__`` only stores
hyperparameters; the shapes (context width, number of actions, action-feature
width) and the learned state (``name_`` attributes) are set on first use;
``random_state`` seeds every draw; policies pickle.

=================  ==========================================================  ======================
Policy             Action choice                                               Propensities
=================  ==========================================================  ======================
``UniformRandom``  uniform over the candidates                                 exact
``EpsilonGreedy``  best ridge estimate, else uniform with probability epsilon  exact (closed form)
``Softmax``        ``exp(estimate / temperature)``                             exact (closed form)
``LinUCB``         best upper confidence bound (shared or disjoint ridge)      exact: 1, or 1 / #ties
``LinearTS``       Thompson sampling, Gaussian posterior of a ridge model      Monte Carlo estimate
``LogisticTS``     Thompson sampling, Laplace posterior of a logistic model    Monte Carlo estimate
``BernoulliTS``    Thompson sampling, Beta posterior per action, no context    Monte Carlo estimate
=================  ==========================================================  ======================

The linear policies model the reward over the joint features of context and
action (:func:`~matinee.apps.artwork.features.joint_features`). The Monte Carlo
estimate is described in :mod:`matinee.apps.artwork.policies.thompson`.

Examples
--------
>>> from matinee.apps.artwork.policies import LinUCB
>>> from matinee.apps.sim import ArtworkEnvironment
>>> env = ArtworkEnvironment(n_context_features=4, n_variants=3, n_variant_features=2, seed=0)
>>> batch = env.sample(500)
>>> policy = LinUCB(alpha=0.5, random_state=0)
>>> choice = policy.choose(batch.context, batch.variant_features)
>>> choice.actions.shape, float(choice.propensities.min()) > 0
((500,), True)
"""

from matinee.apps.artwork.policies.linucb import LinUCB
from matinee.apps.artwork.policies.simple import EpsilonGreedy, Softmax, UniformRandom
from matinee.apps.artwork.policies.thompson import BernoulliTS, LinearTS, LogisticTS

__all__ = ["BernoulliTS", "EpsilonGreedy", "LinUCB", "LinearTS", "LogisticTS", "Softmax", "UniformRandom"]
