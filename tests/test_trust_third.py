"""The third trust pass, each case as the user met it: files a user can serve, frozen
settings that stay frozen, one warning per call, the neuro functions' messages.

(The bad values of this pass are also in the battery of ``test_bad_input.py``.)
"""

from __future__ import annotations

import os
import stat
import warnings

import numpy as np
import pytest
from torch import nn

from captum_groups import CircuitSettings, ParameterError
from captum_groups._files import write_atomic
from captum_groups.datasets import digits_cnn, load_digits
from captum_groups.neuro import localize, reverse_predictivity


def test_written_files_take_the_umask_mode_so_a_report_can_be_served(tmp_path):
    previous = os.umask(0o022)
    try:
        shared = write_atomic(tmp_path / "report.html", "<html></html>")
        os.umask(0o077)
        private = write_atomic(tmp_path / "circuit.json", "{}")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o644
    assert stat.S_IMODE(private.stat().st_mode) == 0o600


def test_frozen_settings_cannot_be_changed_through_their_n_groups():
    settings = CircuitSettings(n_groups={"relu3": 2})
    with pytest.raises(TypeError):
        settings.n_groups["relu3"] = 0  # type: ignore[index]
    assert settings.groups_for("relu3") == 2
    assert hash(settings) == hash(CircuitSettings(n_groups={"relu3": 2}))
    assert settings == CircuitSettings.from_dict(settings.to_dict())
    source = {"relu3": 2}
    kept = CircuitSettings(n_groups=source)
    source["relu3"] = 0  # the caller's dict is copied, not held
    assert kept.groups_for("relu3") == 2


def test_localize_on_a_training_model_warns_once():
    model = digits_cnn()
    model.dropout = nn.Dropout()  # a module whose training mode matters
    model.train()
    x, y = load_digits("test")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        localize(model, "relu3", x[y == 0], x[y != 0], fraction=0.1)
    assert sum("training mode" in str(w.message) for w in caught) == 1


def test_reverse_predictivity_names_features_and_recordings_the_right_way_round():
    with pytest.raises(ParameterError) as caught:
        reverse_predictivity(np.ones((50, 3)), np.ones((60, 2)))
    assert caught.value.parameter == "recordings"
    assert "50 rows of features, 60 recorded stimuli" in str(caught.value)
