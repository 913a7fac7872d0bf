"""Tests for stratified_split and balance."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wjsentiment.datasets import balance, stratified_split

FAST = settings(max_examples=60, deadline=None)

labels_st = st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=80)


@st.composite
def fractions_st(draw):
    weights = draw(st.lists(st.integers(1, 20), min_size=1, max_size=4))
    return tuple(w / sum(weights) for w in weights)


@FAST
@given(y=labels_st, fractions=fractions_st(), seed=st.integers(0, 2**16))
def test_split_partitions_with_exact_class_counts(y, fractions, seed):
    y = np.array(y)
    parts = stratified_split(y, fractions, random_state=seed)
    assert len(parts) == len(fractions)
    joined = np.concatenate(parts)
    assert sorted(joined.tolist()) == list(range(len(y)))  # disjoint and covering
    for part in parts:
        assert part.dtype.kind == "i"
    for label in np.unique(y):
        n = int((y == label).sum())
        got = [int((y[p] == label).sum()) for p in parts]
        for j in range(1, len(fractions)):
            assert got[j] == math.floor(fractions[j] * n + 1e-9)
        assert got[0] == n - sum(got[1:])


@FAST
@given(y=labels_st, seed=st.integers(0, 2**16))
def test_split_is_reproducible(y, seed):
    first = stratified_split(y, (0.5, 0.3, 0.2), random_state=seed)
    second = stratified_split(y, (0.5, 0.3, 0.2), random_state=seed)
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


def test_split_shuffles_within_class():
    y = np.array(["a"] * 100)
    tests = {tuple(stratified_split(y, (0.9, 0.1), random_state=s)[1]) for s in range(5)}
    assert len(tests) > 1
    assert all(len(t) == 10 for t in tests)


def test_split_default_fractions():
    y = ["x"] * 100 + ["y"] * 40
    train, valid, test = stratified_split(y, random_state=0)
    assert (len(train), len(valid), len(test)) == (80 + 32, 15 + 6, 5 + 2)


@FAST
@given(
    n_groups=st.integers(1, 40),
    size=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_grouped_split_keeps_groups_together(n_groups, size, seed):
    rng = np.random.default_rng(seed)
    group_labels = rng.choice(["a", "b", "c"], size=n_groups)
    groups = np.repeat(np.arange(n_groups), size)
    y = np.repeat(group_labels, size)
    parts = stratified_split(y, (0.6, 0.2, 0.2), random_state=seed, groups=groups)
    assert sorted(np.concatenate(parts).tolist()) == list(range(len(y)))
    seen = [set(groups[p].tolist()) for p in parts]
    for i in range(len(seen)):
        for j in range(i + 1, len(seen)):
            assert not seen[i] & seen[j]


def test_grouped_split_on_pairs_is_close_to_requested():
    y = np.repeat(np.array(["a"] * 50 + ["b"] * 20), 2)
    groups = np.repeat(np.arange(70), 2)
    train, test = stratified_split(y, (0.8, 0.2), random_state=1, groups=groups)
    assert int((y[test] == "a").sum()) == 20 and int((y[test] == "b").sum()) == 8


@pytest.mark.parametrize(
    "fractions", [(0.8, 0.3), (0.5, 0.5, 0.0), (1.2, -0.2), (), 0.8, ("a", "b")]
)
def test_bad_fractions(fractions):
    with pytest.raises(ValueError, match="fractions"):
        stratified_split(["a", "b"], fractions)


def test_bad_y_and_groups():
    with pytest.raises(ValueError, match="y"):
        stratified_split([], (0.5, 0.5))
    with pytest.raises(ValueError, match="one-dimensional"):
        stratified_split([[1, 2]], (0.5, 0.5))
    with pytest.raises(ValueError, match="groups"):
        stratified_split(["a", "b"], (0.5, 0.5), groups=[1])


@FAST
@given(y=labels_st, seed=st.integers(0, 2**16))
def test_undersample_equal_counts_without_repeats(y, seed):
    y = np.array(y)
    idx = balance(y, random_state=seed)
    classes, counts = np.unique(y, return_counts=True)
    assert len(np.unique(idx)) == len(idx)  # no repeats
    assert idx.min() >= 0 and idx.max() < len(y)
    got = {c: int((y[idx] == c).sum()) for c in classes}
    assert set(got.values()) == {int(counts.min())}


@FAST
@given(y=labels_st, seed=st.integers(0, 2**16))
def test_oversample_equal_counts_keeping_everything(y, seed):
    y = np.array(y)
    idx = balance(y, "oversample", random_state=seed)
    classes, counts = np.unique(y, return_counts=True)
    assert set(np.unique(idx).tolist()) == set(range(len(y)))  # every sample kept
    got = {c: int((y[idx] == c).sum()) for c in classes}
    assert set(got.values()) == {int(counts.max())}


def test_balance_unknown_strategy_lists_allowed():
    with pytest.raises(ValueError, match="undersample.*oversample"):
        balance(["a", "b"], "smote")


def test_balance_accepts_generator():
    idx = balance(["a"] * 5 + ["b"], random_state=np.random.default_rng(0))
    assert len(idx) == 2
