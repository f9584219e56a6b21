"""The embedded digits data and the shipped CNN."""

from __future__ import annotations

import torch

from captum_groups.datasets import DIGITS_WEIGHTS, digits_cnn, load_digits


def test_split_is_fixed_and_complete():
    x_train, y_train = load_digits("train")
    x_test, y_test = load_digits("test")
    x_all, _ = load_digits("all")
    assert len(x_train) + len(x_test) == len(x_all) == 1797
    assert x_test.shape == (450, 1, 8, 8) and x_test.dtype == torch.float32
    assert 0.0 <= float(x_all.min()) and float(x_all.max()) <= 1.0
    assert torch.equal(load_digits("test")[0], x_test)
    assert set(y_test.tolist()) == set(range(10))


def test_shipped_weights_reach_97_percent_on_held_out_digits():
    model = digits_cnn()
    x_test, y_test = load_digits("test")
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    assert accuracy >= 0.97
    assert DIGITS_WEIGHTS.stat().st_size < 300_000
