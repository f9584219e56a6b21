"""The one rule for reading data: every kind of data gives the same batches."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from captum_groups.data import (
    batch_inputs,
    check_reiterable,
    examples_at,
    iter_batches,
    n_examples,
)

X, Y = torch.arange(20.0).reshape(10, 2), torch.arange(10)


class DictDataset(Dataset):
    def __len__(self) -> int:
        return len(X)

    def __getitem__(self, i: int) -> dict:
        return {"image": X[i], "label": Y[i]}


@pytest.mark.parametrize(
    "data",
    [
        X,
        TensorDataset(X, Y),
        DataLoader(TensorDataset(X, Y), batch_size=3),
        DataLoader(DictDataset(), batch_size=4),
        [X[:4], X[4:]],
        [(X[:4], Y[:4]), (X[4:], Y[4:])],
        [[X[:7], Y[:7]], [X[7:], Y[7:]]],
        [{"pixel_values": X[:5]}, {"pixel_values": X[5:]}],
    ],
    ids=["tensor", "dataset", "loader", "dict-loader", "list", "tuples", "lists", "dicts"],
)
def test_every_kind_of_data_gives_the_same_examples(data):
    assert torch.equal(torch.cat(list(iter_batches(data, 4))), X)


def test_labels_follow_the_same_rule():
    for data in (TensorDataset(X, Y), DataLoader(DictDataset(), batch_size=3)):
        pairs = list(iter_batches(data, 4, labels=True))
        assert torch.equal(torch.cat([y for _, y in pairs]), Y)


def test_bad_data_is_refused_with_the_parameter_named():
    with pytest.raises(ValueError, match="inputs yields dict batches without inputs"):
        list(iter_batches([{"foo": X}], parameter="inputs"))
    with pytest.raises(TypeError, match="data must yield tensors"):
        list(iter_batches([["a", "b"]]))
    with pytest.raises(TypeError, match="data must be a tensor, a Dataset"):
        list(iter_batches(3))
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        list(iter_batches(X, 0))
    with pytest.raises(ValueError, match="must give labels"):
        list(iter_batches(X, labels=True))
    with pytest.raises(TypeError, match="one-shot iterator"):
        check_reiterable(iter([X]))
    with pytest.raises(ValueError, match="shuffle=False"):
        check_reiterable(DataLoader(TensorDataset(X), shuffle=True))
    check_reiterable(DataLoader(TensorDataset(X)))
    assert batch_inputs((X, Y)) is X


def test_the_number_of_examples_is_known_without_reading():
    assert n_examples(X) == 10
    assert n_examples(TensorDataset(X)) == 10
    assert n_examples(DataLoader(TensorDataset(X), batch_size=3)) == 10
    assert n_examples([X]) is None


@pytest.mark.parametrize(
    "data",
    [
        X,
        TensorDataset(X, Y),
        DictDataset(),
        DataLoader(TensorDataset(X, Y), batch_size=3),
        [(X[:4], Y[:4]), (X[4:], Y[4:])],
        [{"image": X[:6]}, {"image": X[6:]}],
    ],
    ids=["tensor", "dataset", "dict-dataset", "loader", "tuples", "dicts"],
)
def test_examples_are_fetched_by_position_from_every_kind_of_data(data):
    assert torch.equal(examples_at(data, [9, 0, 4, 4]), X[[9, 0, 4, 4]])
    with pytest.raises(ValueError, match="data has 10 examples, but example 10 is asked for"):
        examples_at(data, [1, 10])
