"""The Open Bandit Dataset adapter: the shipped sample, Open Bandit Pipeline's preprocessing, bad layouts."""

from __future__ import annotations

import doctest
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from matinee.apps.artwork import obd as module_under_test
from matinee.apps.artwork.obd import load_obd
from matinee.apps.artwork.ope import IPS, Replay
from matinee.errors import ParameterError

OBD = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "obd"
needs_obd = pytest.mark.skipif(not (OBD / "random" / "all" / "all.csv").is_file(),
                               reason=f"the Open Bandit Dataset sample is not at {OBD}")

# Items per campaign, and context width after one-hot encoding with drop_first
# (the numbers Open Bandit Pipeline's OpenBanditDataset gives on the same files).
SHAPES = {("random", "all"): (80, 20), ("random", "men"): (34, 21), ("random", "women"): (46, 19),
          ("bts", "all"): (80, 22), ("bts", "men"): (34, 22), ("bts", "women"): (46, 19)}


@needs_obd
@pytest.mark.parametrize("policy, campaign", sorted(SHAPES))
def test_loads_every_sample(policy, campaign):
    log = load_obd(OBD, policy, campaign)
    n_items, width = SHAPES[(policy, campaign)]
    assert len(log) == 10_000
    assert log.n_actions == n_items and log.context.shape == (10_000, width)
    assert log.action_features.shape == (n_items, 4)
    assert sorted(set(log.position.tolist())) == [0, 1, 2]
    assert set(np.unique(log.context)) <= {0.0, 1.0}
    assert set(np.unique(log.reward)) <= {0.0, 1.0}
    assert (np.diff(log.timestamp) >= 0).all()
    assert log.policy == policy and log.policy_version == campaign
    if policy == "random":
        np.testing.assert_allclose(log.propensity, 1 / n_items)


@needs_obd
def test_rows_follow_the_csv_sorted_by_time():
    raw = pd.read_csv(OBD / "random" / "men" / "men.csv", index_col=0).sort_values("timestamp")
    log = load_obd(OBD, "random", "men")
    np.testing.assert_array_equal(log.action, raw["item_id"])
    np.testing.assert_array_equal(log.position, raw["position"] - 1)
    np.testing.assert_array_equal(log.reward, raw["click"])
    np.testing.assert_array_equal(log.propensity, raw["propensity_score"])
    users = raw.filter(like="user_feature")
    # one-hot with the first (sorted) category of each feature dropped: one 1 per feature not at its first
    first = {c: sorted(users[c].unique())[0] for c in users.columns}
    expected_ones = sum((users[c] != first[c]).to_numpy().astype(int) for c in users.columns)
    np.testing.assert_array_equal(log.context.sum(axis=1), expected_ones)


@needs_obd
def test_item_features_are_label_encoded_then_the_numeric_one():
    items = pd.read_csv(OBD / "random" / "all" / "item_context.csv", index_col=0)
    log = load_obd(OBD, "random", "all")
    np.testing.assert_allclose(log.action_features[:, 3], items["item_feature_0"])
    for j, col in enumerate(["item_feature_1", "item_feature_2", "item_feature_3"]):
        codes = log.action_features[:, j]
        assert codes.min() == 0 and codes.max() == items[col].nunique() - 1
        np.testing.assert_array_equal(np.argsort(codes, kind="stable"),
                                      np.argsort(items[col].to_numpy(), kind="stable"))


@needs_obd
def test_affinity_columns_are_optional():
    plain = load_obd(OBD, "random", "men")
    wide = load_obd(OBD, "random", "men", include_affinity=True)
    assert wide.context.shape[1] == plain.context.shape[1] + 34


@needs_obd
def test_uniform_evaluation_of_the_random_log_is_its_click_rate():
    log = load_obd(OBD, "random", "all")
    uniform = np.full((len(log), log.n_actions, 3), 1 / log.n_actions)
    assert IPS().value(log, uniform) == pytest.approx(log.reward.mean())
    greedy = np.zeros((len(log), log.n_actions))
    greedy[:, 0] = 1.0
    result = Replay().estimate(log, greedy, n_bootstrap=0)
    kept = log.action == 0
    assert result.value == pytest.approx(log.reward[kept].mean())


# -- bad layouts ----------------------------------------------------------------------------------
def write_sample(root: Path, *, drop_log_column=None, drop_item_column=None, item_id_max=1):
    folder = root / "random" / "men"
    folder.mkdir(parents=True)
    log = pd.DataFrame({"timestamp": ["2019-11-24 00:00:02+00:00", "2019-11-24 00:00:01+00:00"],
                        "item_id": [item_id_max, 0], "position": [2, 1], "click": [1, 0],
                        "propensity_score": [0.5, 0.5], "user_feature_0": ["b", "a"],
                        "user-item_affinity_0": [0.0, 1.0]})
    items = pd.DataFrame({"item_id": [0, 1], "item_feature_0": [0.1, 0.2], "item_feature_1": ["y", "x"]})
    if drop_log_column:
        log = log.drop(columns=drop_log_column)
    if drop_item_column:
        items = items.drop(columns=drop_item_column)
    log.to_csv(folder / "men.csv")
    items.to_csv(folder / "item_context.csv")
    return root


def test_a_tiny_layout_by_hand(tmp_path):
    log = load_obd(write_sample(tmp_path), "random", "men")
    np.testing.assert_array_equal(log.action, [0, 1])  # sorted by time
    np.testing.assert_array_equal(log.position, [0, 1])
    np.testing.assert_array_equal(log.context, [[0.0], [1.0]])  # "a" dropped, "b" kept
    np.testing.assert_array_equal(log.action_features, [[1.0, 0.1], [0.0, 0.2]])  # "y" -> 1, "x" -> 0
    assert log.timestamp[1] - log.timestamp[0] == pytest.approx(1.0)


@pytest.mark.parametrize("kwargs, message, parameter", [
    ({"drop_log_column": "click"}, "lacks column.*click", "click"),
    ({"drop_log_column": "propensity_score"}, "propensity_score", "propensity_score"),
    ({"drop_log_column": "user_feature_0"}, "no user_feature", "user_feature"),
    ({"drop_item_column": "item_feature_0"}, "item_context.csv lacks column.*item_feature_0", "item_feature_0"),
    ({"item_id_max": 5}, "item_id 5 has no row", "item_id"),
])
def test_bad_layouts_name_the_column(tmp_path, kwargs, message, parameter):
    with pytest.raises(ParameterError, match=message) as info:
        load_obd(write_sample(tmp_path, **kwargs), "random", "men")
    assert info.value.parameter == parameter


def test_missing_files_are_named(tmp_path):
    (tmp_path / "bts" / "women").mkdir(parents=True)
    (tmp_path / "bts" / "women" / "women.csv").write_text("x\n")
    with pytest.raises(ParameterError, match="item_context.csv") as info:
        load_obd(tmp_path, "bts", "women")
    assert info.value.parameter == "directory"
    assert info.value.missing == [str(tmp_path / "bts" / "women" / "item_context.csv")]


@pytest.mark.parametrize("policy, campaign, parameter", [("greedy", "all", "behavior_policy"),
                                                          ("random", "kids", "campaign")])
def test_unknown_policy_or_campaign(tmp_path, policy, campaign, parameter):
    with pytest.raises(ParameterError) as info:
        load_obd(tmp_path, policy, campaign)
    assert info.value.parameter == parameter


def test_docstring_examples_run():
    assert doctest.testmod(module_under_test, optionflags=doctest.ELLIPSIS).failed == 0
