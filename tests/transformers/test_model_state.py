"""Every transformer entry point leaves the user's model as it found it (hooks, forward
attributes, fast-path flags, modes, parameters, buffers), in eval and in training mode,
also after a call that raised."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from captum_groups import GroupIntegratedGradients, NeuronGroup, ablate, layer_activations, patch
from captum_groups.transformers import hooked, token_exemplars

from .._helpers import assert_same_state, model_state


class TokenClassifier(nn.Module):
    """Tokens -> embedding -> two encoder blocks (with dropout and a nested-tensor fast
    path) -> mean -> 3 classes."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(20, 8)
        layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.1, batch_first=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=True)
        self.head = nn.Linear(8, 3)

    def forward(self, ids):
        return self.head(self.encoder(self.embed(ids), src_key_padding_mask=ids == 0).mean(1))


HEAD = NeuronGroup("blocks.1.attn.hook_z", [1], dim=2)
ENTRIES = {
    "hooked call": lambda m, ids: m(ids),
    "layer_activations": lambda m, ids: layer_activations(m, "blocks.0.attn.hook_pattern", ids),
    "token attribution": lambda m, ids: GroupIntegratedGradients(
        m, "blocks.1.attn.hook_z"
    ).attribute(ids, HEAD, n_steps=4),
    "patch": lambda m, ids: _run_inside(patch(m, HEAD, source=ids.flip(0)), m, ids),
    "ablate": lambda m, ids: _run_inside(ablate(m, HEAD), m, ids),
    "token_exemplars": lambda m, ids: token_exemplars(m, HEAD, ids, k=3),
}


def _run_inside(context, model, ids):
    with context:
        return model(ids)


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("entry", sorted(ENTRIES))
def test_the_model_is_left_as_it_was(entry, training):
    torch.manual_seed(0)
    plain = TokenClassifier().train(training)
    model = hooked(plain)
    ids = torch.randint(1, 20, (4, 6))
    ids[1, 4:] = 0  # padding: the nested-tensor fast path would take it
    before = model_state(plain)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ENTRIES[entry](model, ids)
        assert_same_state(before, model_state(plain))
        assert plain.encoder.use_nested_tensor is True
        with pytest.raises((RuntimeError, IndexError, ValueError)):
            ENTRIES[entry](model, torch.full((4, 6), 99))  # ids beyond the vocabulary
    assert_same_state(before, model_state(plain))
    assert plain.encoder.use_nested_tensor is True
    assert all("forward" not in m.__dict__ for m in plain.modules())
