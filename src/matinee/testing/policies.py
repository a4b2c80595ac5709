"""``check_policy``: the checks every :class:`~matinee.apps.artwork.policy.Policy` passes.

Each check takes ``make_policy``, a callable returning a new, unused policy (a
class with workable defaults, or e.g. ``lambda: LinUCB(alpha=0.5)``), builds
its own small seeded bandit log (:func:`sample_feedback`: 4 actions, 3 context
features, 2 features per action, candidate masks) and raises ``AssertionError``
naming the policy and what is wrong. Run them all with :func:`check_policy`, or
one test per check under pytest::

    import pytest
    from matinee.testing import policy_checks

    @pytest.mark.parametrize("check", policy_checks(), ids=lambda c: c.__name__)
    def test_my_policy(check):
        check(MyPolicy)

What is checked: ``__init__`` stores only hyperparameters and ``get_params`` /
``set_params`` round-trip; a bad hyperparameter raises a ``ParameterError``
naming it on use; ``probabilities`` rows are distributions, exactly 0 off the
candidates and, unless the policy is ``deterministic``, never 0 on them (a
deterministic policy splits its mass evenly over tied best actions);
``choose`` picks candidates and returns as propensity the probability of the
action picked (exactly, or within Monte Carlo error when
``exact_propensities`` is false); over many draws ``choose`` picks each action
as often as ``probabilities`` says; a batch gets what its rows get one by one,
and shared action features what the same features per round get; the same
``random_state`` gives the same choices; a pickled policy behaves the same;
``update`` returns the policy, keeps learned state in ``name_`` attributes
(none before first use) and refuses feedback that is not a ``LoggedFeedback``
or does not match the shapes the policy was first used with; bad inputs raise
``ParameterError`` naming them; no input is modified.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from matinee.apps.artwork.data import LoggedFeedback
from matinee.apps.artwork.policy import Choice, Policy
from matinee.errors import ParameterError

PolicyFactory = Callable[[], Policy]
Check = Callable[[PolicyFactory], None]

#: Absolute tolerance between two exact computations of one probability.
EXACT_ATOL = 1e-9


def check_policy(make_policy: PolicyFactory) -> None:
    """Run every conformance check on the policy ``make_policy()`` builds.

    Parameters
    ----------
    make_policy
        Returns a new, unused policy each call.

    Raises
    ------
    AssertionError
        The first check that fails, naming the policy and the broken rule.

    Examples
    --------
    >>> from matinee.apps.artwork.policies import EpsilonGreedy
    >>> check_policy(lambda: EpsilonGreedy(epsilon=0.2))
    """
    for check in policy_checks():
        check(make_policy)


def policy_checks() -> list[Check]:
    """Every check, in order, each a function of ``make_policy`` (for ``pytest.mark.parametrize``)."""
    return list(_CHECKS)


def sample_feedback(n: int = 300, *, n_actions: int = 4, n_context_features: int = 3, n_action_features: int = 2,
                    seed: int = 0) -> LoggedFeedback:
    """A small seeded log, chosen uniformly among each round's candidates, with 0/1 rewards.

    Rewards are Bernoulli draws of ``sigmoid(z . (b + B x))``; every third round
    offers all actions, the others a random subset of at least two.

    Examples
    --------
    >>> log = sample_feedback(10)
    >>> len(log), log.n_actions, log.action_features.shape
    (10, 4, (10, 4, 2))
    """
    rng = np.random.default_rng(seed)
    context = rng.normal(size=(n, n_context_features))
    features = rng.uniform(-1, 1, size=(n, n_actions, n_action_features))
    mask = rng.random((n, n_actions)) < 0.6
    mask[np.arange(n), rng.integers(0, n_actions, n)] = True
    mask[np.arange(n), rng.integers(0, n_actions, n)] = True
    mask[::3] = True
    weights = rng.normal(size=n_action_features) + context @ rng.normal(size=(n_context_features, n_action_features))
    logits = np.einsum("nak,nk->na", features, 2.0 * weights)
    scores = np.where(mask, rng.random((n, n_actions)), -1.0)
    action = scores.argmax(axis=1)
    reward = (rng.random(n) < 1.0 / (1.0 + np.exp(-logits[np.arange(n), action]))).astype(np.float64)
    return LoggedFeedback(context=context, action=action, reward=reward, propensity=1.0 / mask.sum(axis=1),
                          n_actions=n_actions, action_features=features, candidates=mask)


# -- helpers ----------------------------------------------------------------------------------------


def _name(policy: Any) -> str:
    return type(policy).__name__


def _require(condition: Any, policy: Any, message: str) -> None:
    if not condition:
        raise AssertionError(f"{_name(policy)}: {message}")


def _raises(policy: Any, what: str, call: Callable[[], Any], parameters: tuple[str, ...]) -> None:
    try:
        call()
    except ParameterError as exc:
        named = getattr(exc, "parameter", None)
        _require(named in parameters, policy, f"{what} raised ParameterError naming {named!r}, "
                 f"not {' or '.join(map(repr, parameters))}")
        return
    except Exception as exc:
        raise AssertionError(f"{_name(policy)}: {what} raised {type(exc).__name__} ({exc}), "
                             "not ParameterError") from exc
    raise AssertionError(f"{_name(policy)}: {what} did not raise ParameterError")


def _seeded(make_policy: PolicyFactory, seed: int = 0) -> Policy:
    """A new policy, with ``random_state=seed`` when it takes one and none was given."""
    policy = make_policy()
    if "random_state" in policy.get_params() and policy.get_params()["random_state"] is None:
        policy.set_params(random_state=seed)
    return policy


def _rounds(log: LoggedFeedback) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    return log.context, log.action_features, log.candidates


def _trained(make_policy: PolicyFactory, log: LoggedFeedback | None = None) -> Policy:
    policy = _seeded(make_policy)
    log = sample_feedback() if log is None else log
    policy.update(log.subset(slice(0, len(log) // 2)))
    policy.update(log.subset(slice(len(log) // 2, None)))
    return policy


def _mc_tolerance(policy: Policy) -> float:
    """How far a Monte Carlo probability may be from the truth: 5 standard errors at p = 1/2."""
    if policy.exact_propensities:
        return EXACT_ATOL
    n_samples = policy.get_params().get("n_samples", 1000)
    return 5.0 * np.sqrt(0.25 / n_samples) if isinstance(n_samples, int) and n_samples > 0 else 0.1


def _check_distribution(policy: Policy, probs: np.ndarray, mask: np.ndarray | None, n: int, n_actions: int,
                        what: str) -> None:
    _require(probs.shape == (n, n_actions), policy, f"{what}: shape {probs.shape}, not {(n, n_actions)}")
    _require(np.isfinite(probs).all() and (probs >= 0).all(), policy, f"{what}: negative or non-finite values")
    _require(np.allclose(probs.sum(axis=1), 1.0, rtol=0, atol=EXACT_ATOL), policy, f"{what}: rows do not sum to 1")
    allowed = np.ones((n, n_actions), bool) if mask is None else mask
    _require((probs[~allowed] == 0).all(), policy, f"{what}: an action that is not a candidate has probability > 0")
    if policy.deterministic:
        for row, ok in zip(probs, allowed, strict=True):
            positive = row[row > 0]
            _require(np.allclose(positive, 1.0 / len(positive), rtol=0, atol=EXACT_ATOL), policy,
                     f"{what}: a deterministic policy does not split its mass evenly over tied actions")
            _require(ok[row > 0].all(), policy, f"{what}: mass off the candidates")
    else:
        _require((probs[allowed] > 0).all(), policy, f"{what}: a candidate of a randomised policy has probability 0")


# -- the checks -------------------------------------------------------------------------------------


def check_init_stores_only_hyperparameters(make_policy: PolicyFactory) -> None:
    """``__init__`` stores its keyword arguments as attributes of the same name, and nothing else."""
    policy = make_policy()
    names = set(policy.get_params())
    _require(set(vars(policy)) == names, policy, f"__init__ stored {sorted(vars(policy))}, "
             f"its parameters are {sorted(names)}")
    try:
        type(policy)(**{name: object() for name in names})
    except Exception as exc:
        raise AssertionError(f"{_name(policy)}: __init__ validated its arguments ({exc}); "
                             "leave validation to first use") from exc


def check_params_round_trip(make_policy: PolicyFactory) -> None:
    """``get_params`` rebuilds an equal policy; ``set_params`` returns self; unknown names are refused."""
    policy = make_policy()
    params = policy.get_params()
    _require(type(policy)(**params).get_params() == params, policy, "get_params() does not rebuild the policy")
    _require(policy.set_params(**params) is policy, policy, "set_params() does not return the policy")
    _require(repr(policy).startswith(_name(policy) + "("), policy, f"unexpected repr {policy!r}")
    _raises(policy, "set_params(no_such_parameter=1)", lambda: policy.set_params(no_such_parameter=1),
            ("no_such_parameter",))


def check_bad_hyperparameters_named(make_policy: PolicyFactory) -> None:
    """A hyperparameter of the wrong kind makes ``probabilities``, ``choose`` and ``update`` raise, naming it."""
    log = sample_feedback(20)
    for name in make_policy().get_params():
        for call in ("probabilities", "choose"):
            policy = make_policy().set_params(**{name: object()})
            _raises(policy, f"{call} with {name}=object()", partial(getattr(policy, call), *_rounds(log)), (name,))
        policy = make_policy().set_params(**{name: object()})
        _raises(policy, f"update with {name}=object()", partial(policy.update, log), (name,))


def check_probabilities_are_distributions(make_policy: PolicyFactory) -> None:
    """Rows sum to 1, are 0 exactly off the candidates and (if randomised) positive on them; before and after learning."""
    log = sample_feedback()
    n, n_actions = len(log), log.n_actions
    fresh = _seeded(make_policy)
    _check_distribution(fresh, fresh.probabilities(*_rounds(log)), log.candidates, n, n_actions, "before update")
    policy = _trained(make_policy, log)
    _check_distribution(policy, policy.probabilities(*_rounds(log)), log.candidates, n, n_actions, "after update")
    every = policy.probabilities(log.context, log.action_features)
    _check_distribution(policy, every, None, n, n_actions, "without candidates")
    plain = _seeded(make_policy)
    probs = plain.probabilities(log.context, candidates=log.candidates)
    _check_distribution(plain, probs, log.candidates, n, n_actions, "without action features")


def check_choose_respects_candidates(make_policy: PolicyFactory) -> None:
    """``choose`` returns one candidate per round and its probability as propensity (never 0)."""
    log = sample_feedback()
    for policy in (_seeded(make_policy), _trained(make_policy, log)):
        choice = policy.choose(*_rounds(log))
        _require(isinstance(choice, Choice) and len(choice) == len(log), policy, "choose did not return a Choice "
                 "with one action per round")
        actions = np.asarray(choice.actions)
        _require(actions.dtype.kind in "iu" and actions.shape == (len(log),), policy,
                 f"actions have dtype {actions.dtype} and shape {actions.shape}")
        assert log.candidates is not None
        _require(log.candidates[np.arange(len(log)), actions].all(), policy, "chose an action that is not a candidate")
        props = np.asarray(choice.propensities, dtype=np.float64)
        _require(((props > 0) & (props <= 1)).all(), policy, "a propensity is outside (0, 1]")
        probs = policy.probabilities(*_rounds(log))[np.arange(len(log)), actions]
        gap = float(np.max(np.abs(probs - props)))
        _require(gap <= _mc_tolerance(policy), policy, f"propensities differ from probabilities by up to {gap:.3g}")


def check_choice_frequencies(make_policy: PolicyFactory) -> None:
    """Over many ``choose`` calls each action is picked as often as ``probabilities`` says (seeded)."""
    log = sample_feedback()
    policy = _trained(make_policy, log)
    repeats, rows = 3000, np.array([0, 1, 2, 4])
    idx = np.repeat(rows, repeats)
    batch = log.subset(idx)
    probs = policy.probabilities(*_rounds(log.subset(rows)))
    actions = np.asarray(policy.choose(*_rounds(batch)).actions).reshape(len(rows), repeats)
    freq = np.stack([np.bincount(a, minlength=log.n_actions) for a in actions]) / repeats
    allowed = 5.0 * np.sqrt(probs * (1 - probs) / repeats) + 1.0 / repeats + _mc_tolerance(policy)
    worst = np.unravel_index(np.argmax(np.abs(freq - probs) - allowed), probs.shape)
    _require((np.abs(freq - probs) <= allowed).all(), policy,
             f"round {rows[worst[0]]}, action {worst[1]}: chosen {freq[worst]:.3f} of the time, "
             f"probability {probs[worst]:.3f}")


def check_batch_equals_rows(make_policy: PolicyFactory) -> None:
    """A batch gets what its rounds get one at a time, and shared action features what they get per round."""
    log = sample_feedback(40)
    policy = _trained(make_policy, sample_feedback())
    tolerance = _mc_tolerance(policy)
    batch = policy.probabilities(*_rounds(log))
    for i in range(0, len(log), 7):
        one = policy.probabilities(*_rounds(log.subset(np.array([i]))))
        _require(np.allclose(one[0], batch[i], rtol=0, atol=tolerance), policy,
                 f"round {i} alone gets other probabilities than inside a batch")
    assert log.action_features is not None
    shared = log.action_features[0]
    per_round = np.broadcast_to(shared, log.action_features.shape)
    a = policy.probabilities(log.context, shared, log.candidates)
    b = policy.probabilities(log.context, np.array(per_round), log.candidates)
    _require(np.allclose(a, b, rtol=0, atol=tolerance), policy,
             "shared action features give other probabilities than the same features per round")


def check_deterministic(make_policy: PolicyFactory) -> None:
    """Two policies with one ``random_state`` make identical choices through updates."""
    log = sample_feedback()
    runs = []
    for _ in range(2):
        policy = _seeded(make_policy, seed=7)
        first = policy.choose(*_rounds(log))
        policy.update(log)
        second = policy.choose(*_rounds(log))
        runs.append((first, second, policy.probabilities(*_rounds(log))))
    (a1, a2, p), (b1, b2, q) = runs
    for x, y in ((a1, b1), (a2, b2)):
        _require(np.array_equal(x.actions, y.actions) and np.array_equal(x.propensities, y.propensities),
                 policy, "the same random_state gave different choices")
    _require(np.array_equal(p, q), policy, "the same random_state gave different probabilities")


def check_pickle_round_trip(make_policy: PolicyFactory) -> None:
    """A pickled and loaded policy gives the same probabilities and, from there on, the same choices."""
    log = sample_feedback()
    policy = _trained(make_policy, log)
    loaded = pickle.loads(pickle.dumps(policy, protocol=5))
    _require(type(loaded) is type(policy) and loaded.get_params().keys() == policy.get_params().keys(), policy,
             "pickling changed the policy's type or hyperparameters")
    _require(np.array_equal(loaded.probabilities(*_rounds(log)), policy.probabilities(*_rounds(log))), policy,
             "probabilities changed after pickling")
    a, b = policy.choose(*_rounds(log)), loaded.choose(*_rounds(log))
    _require(np.array_equal(a.actions, b.actions) and np.array_equal(a.propensities, b.propensities), policy,
             "choices changed after pickling")
    policy.update(log)
    loaded.update(log)
    _require(np.array_equal(loaded.probabilities(*_rounds(log)), policy.probabilities(*_rounds(log))), policy,
             "a loaded policy learns differently")


def check_update_learns_state(make_policy: PolicyFactory) -> None:
    """``update`` returns the policy, sets ``name_`` attributes (none before use) and keeps the hyperparameters."""
    policy = _seeded(make_policy)
    params = policy.get_params()
    learned = [name for name in vars(policy) if name.endswith("_") and not name.startswith("_")]
    _require(not learned, policy, f"has learned attributes before first use: {learned}")
    _require(policy.update(sample_feedback()) is policy, policy, "update does not return the policy")
    learned = [name for name in vars(policy) if name.endswith("_") and not name.startswith("_")]
    _require(learned, policy, "update set no name_ attributes")
    _require(policy.get_params() == params, policy, "update changed the hyperparameters")


def check_update_rejects_bad_feedback(make_policy: PolicyFactory) -> None:
    """``update`` refuses what is not a ``LoggedFeedback`` and feedback of other shapes, changing nothing."""
    log = sample_feedback()
    policy = _trained(make_policy, log)
    before = policy.probabilities(*_rounds(log))
    not_feedback: tuple[Any, ...] = (None, log.to_frame(), {"action": [0]})
    for bad in not_feedback:
        _raises(policy, f"update({type(bad).__name__})", partial(policy.update, bad), ("feedback",))
    wider = sample_feedback(50, n_context_features=5)
    _raises(policy, "update with 5 context features (first used with 3)", lambda: policy.update(wider),
            ("context", "feedback"))
    more = sample_feedback(50, n_actions=6)
    _raises(policy, "update with 6 actions (first used with 4)", lambda: policy.update(more),
            ("n_actions", "action_features", "feedback"))
    _require(np.array_equal(before, policy.probabilities(*_rounds(log))), policy,
             "a refused update changed the policy")


def check_bad_inputs_named(make_policy: PolicyFactory) -> None:
    """Malformed contexts, candidates and action features raise ``ParameterError`` naming them."""
    log = sample_feedback(20)
    context, features, mask = _rounds(log)
    assert features is not None and mask is not None
    nan_context = context.copy()
    nan_context[3, 1] = np.nan
    no_candidate = mask.copy()
    no_candidate[5] = False
    nan_features = features.copy()
    nan_features[2, 1, 0] = np.inf
    cases: list[tuple[str, tuple[Any, ...], tuple[str, ...]]] = [
        ("a one-dimensional context", (context[:, 0], features, mask), ("context",)),
        ("a context with a NaN", (nan_context, features, mask), ("context",)),
        ("candidates of the wrong shape", (context, features, mask[:, :3]), ("candidates", "action_features")),
        ("a round without candidates", (context, features, no_candidate), ("candidates",)),
        ("action features of the wrong shape", (context, features[:, :, 0], mask), ("action_features",)),
        ("action features with an infinity", (context, nan_features, mask), ("action_features",)),
    ]
    for method in ("probabilities", "choose"):
        for what, args, names in cases:
            policy = _trained(make_policy, log)
            _raises(policy, f"{method} with {what}", partial(getattr(policy, method), *args), names)


def check_inputs_not_mutated(make_policy: PolicyFactory) -> None:
    """``probabilities``, ``choose`` and ``update`` leave their inputs as they were."""
    log = sample_feedback()
    context, features, mask = _rounds(log)
    assert features is not None and mask is not None
    snapshot = [a.copy() for a in (context, features, mask, log.action, log.reward, log.propensity)]
    policy = _trained(make_policy, log)
    policy.probabilities(context, features, mask)
    policy.choose(context, features, mask)
    policy.update(log)
    after = (context, features, mask, log.action, log.reward, log.propensity)
    for old, new in zip(snapshot, after, strict=True):
        _require(np.array_equal(old, new), policy, "an input was modified")


_CHECKS: tuple[Check, ...] = (
    check_init_stores_only_hyperparameters,
    check_params_round_trip,
    check_bad_hyperparameters_named,
    check_probabilities_are_distributions,
    check_choose_respects_candidates,
    check_choice_frequencies,
    check_batch_equals_rows,
    check_deterministic,
    check_pickle_round_trip,
    check_update_learns_state,
    check_update_rejects_bad_feedback,
    check_bad_inputs_named,
    check_inputs_not_mutated,
)
