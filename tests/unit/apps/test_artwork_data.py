"""The bandit data contracts refuse bad input and name the field."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from matinee.apps.artwork import Decision, LoggedFeedback
from matinee.errors import ParameterError


def good(**overrides):
    fields = dict(context=np.zeros((4, 3)), action=[0, 1, 2, 1], reward=[1.0, 0.0, 1.0, 0.0],
                  propensity=[0.25, 0.5, 1.0, 0.5], n_actions=3)
    fields.update(overrides)
    return fields


@pytest.mark.parametrize(
    "overrides, field, message",
    [
        (dict(propensity=[0.0, 0.5, 0.5, 0.5]), "propensity", "must be in (0, 1]"),
        (dict(propensity=[0.5, 0.5, 1.5, 0.5]), "propensity", "must be in (0, 1]"),
        (dict(propensity=[0.5, -0.1, 0.5, 0.5]), "propensity", "must be in (0, 1]"),
        (dict(reward=[1.0, np.nan, 0.0, 0.0]), "reward", "NaN or infinite"),
        (dict(reward=[1.0, 0.0]), "reward", "shape"),
        (dict(propensity=[0.5, 0.5, 0.5]), "propensity", "shape"),
        (dict(context=np.zeros((3, 3))), "context", "shape (n, d)"),
        (dict(context=np.full((4, 3), np.inf)), "context", "NaN or infinite"),
        (dict(action=[0, 1, 3, 1]), "action", "unknown action 3"),
        (dict(action=[0, -1, 2, 1]), "action", "unknown action -1"),
        (dict(action=[0.5, 1, 2, 1]), "action", "whole numbers"),
        (dict(n_actions=0), "n_actions", "positive whole number"),
        (dict(candidates=np.ones((4, 2), bool)), "candidates", "shape"),
        (dict(candidates=np.array([[0, 1, 1]] * 4, bool)), "action", "not among that round's candidates"),
        (dict(action_features=np.zeros((2, 5))), "action_features", "shape"),
        (dict(position=[0, 1]), "position", "rows"),
    ],
)
def test_bad_logged_feedback_is_refused(overrides, field, message):
    with pytest.raises(ParameterError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")) as info:
        LoggedFeedback(**good(**overrides))
    assert info.value.parameter == field


def test_good_feedback_subsets_and_round_trips_through_a_frame(tmp_path):
    feedback = LoggedFeedback(**good(action_features=np.eye(3), position=[0, 1, 0, 1]))
    assert len(feedback) == 4 and feedback.n_features == 3
    assert feedback.features_of().shape == (4, 3, 3)
    part = feedback.subset(np.array([True, False, True, False]))
    assert part.action.tolist() == [0, 2] and part.action_features.shape == (3, 3)
    path = tmp_path / "log.parquet"
    feedback.to_frame().to_parquet(path)
    again = LoggedFeedback.from_parquet(path, n_actions=3)
    assert np.array_equal(again.action, feedback.action) and np.array_equal(again.context, feedback.context)
    assert np.array_equal(again.position, feedback.position)


def test_from_frame_names_a_missing_column():
    with pytest.raises(ParameterError, match="column 'propensity' is missing") as info:
        LoggedFeedback.from_frame(pd.DataFrame({"action": [0], "reward": [1.0]}))
    assert info.value.parameter == "propensity"


@pytest.mark.parametrize(
    "overrides, field",
    [(dict(propensity=0.0), "propensity"), (dict(propensity=2.0), "propensity"), (dict(action="z"), "action")],
)
def test_bad_decisions_are_refused(overrides, field):
    fields = dict(decision_id="d1", ts=0.0, unit_id="m1", context=[0.1, 0.2], candidates=["a", "b"],
                  action="a", propensity=0.5)
    fields.update(overrides)
    with pytest.raises(ParameterError) as info:
        Decision(**fields)
    assert info.value.parameter == field
