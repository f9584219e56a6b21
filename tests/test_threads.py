"""Threads: one model shared by threads that attribute, ablate and just infer.

Hooks act only on the thread that registered them, so another thread running
the same model sees the plain model, and threads attributing at once each get
their own (single-threaded) result.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from captum_groups import (
    GroupGradient,
    GroupIntegratedGradients,
    GroupSet,
    LayerGroupConductance,
    NeuronGroup,
    ablate,
    layer_activations,
)
from captum_groups.datasets import digits_cnn, load_digits

GROUPS = GroupSet.from_labels("relu3", np.arange(64) % 4)
HALVES = GroupSet.from_labels("relu2", np.arange(32) % 2)


def _calls(model, x):
    """Each call: a public entry point on the shared model."""

    def ablated():
        with ablate(model, GROUPS[1]):
            return model(x)

    return [
        lambda: GroupIntegratedGradients(model, "relu3").attribute(x, GROUPS, n_steps=8),
        lambda: GroupGradient(model, "conv2").attribute(x, NeuronGroup("conv2", [0, 3])),
        lambda: LayerGroupConductance(model, "relu2").attribute(x, HALVES, target=3, n_steps=8),
        lambda: layer_activations(model, "relu3", x),
        ablated,
    ]


def test_four_threads_at_once_get_single_threaded_results_and_inference_is_undisturbed():
    model, (x, _) = digits_cnn(), load_digits("test")
    x = x[:8]
    calls = _calls(model, x)
    with torch.no_grad():
        plain = model(x)
    alone = [call() for call in calls]
    stop, disturbed, inferences = threading.Event(), [], [0]

    def infer() -> None:
        while not stop.is_set():
            with torch.no_grad():
                out = model(x)
            inferences[0] += 1
            if not torch.equal(out, plain):
                disturbed.append(out)

    watcher = threading.Thread(target=infer)
    watcher.start()
    try:
        with ThreadPoolExecutor(4) as pool:
            jobs = [(i % len(calls), pool.submit(calls[i % len(calls)])) for i in range(100)]
            results = [(index, job.result()) for index, job in jobs]
    finally:
        stop.set()
        watcher.join()
    for index, result in results:
        torch.testing.assert_close(result, alone[index], rtol=0, atol=0)
    assert inferences[0] > 0 and disturbed == []
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_a_hook_of_this_thread_is_not_seen_by_another():
    model, (x, _) = digits_cnn(), load_digits("test")
    x = x[:4]
    seen = {}
    with ablate(model, NeuronGroup("relu3", list(range(64)))):
        other = threading.Thread(target=lambda: seen.update(other=model(x)))
        other.start()
        other.join()
        seen["here"] = model(x)
    torch.testing.assert_close(seen["other"], model(x))  # the plain model
    assert not torch.equal(seen["here"], seen["other"])  # the ablated one, here


def test_the_users_input_tensor_is_never_flagged_during_a_call():
    """Captum turns requires_grad on for the tensors it is given and off after: on the user's
    tensor, a second thread attributing on it could find the flag turned off mid-call (its
    layer output then had no gradient). Each call now works on its own alias."""
    model, (x, _) = digits_cnn(), load_digits("test")
    x = x[:4]
    seen = []
    handle = model.conv1.register_forward_pre_hook(
        lambda module, args: seen.append(x.requires_grad)
    )
    try:
        GroupGradient(model, "conv2").attribute(x, NeuronGroup("conv2", [0, 3]))
        GroupIntegratedGradients(model, "relu3").attribute(x, GROUPS, n_steps=4)
    finally:
        handle.remove()
    assert seen and not any(seen) and not x.requires_grad
