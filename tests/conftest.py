"""Shared fixtures: small models and data (the helpers they use are in ``_helpers.py``)."""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from captum_groups.cli import main
from captum_groups.datasets import digits_cnn, load_digits

from ._helpers import make_resnet18

warnings.filterwarnings("ignore", message=".*Setting forward, backward hooks.*")


@pytest.fixture(scope="session")
def digits_test() -> tuple[Tensor, Tensor]:
    return load_digits("test")


@pytest.fixture
def digits_model() -> nn.Module:
    return digits_cnn()


@pytest.fixture
def digits_model64() -> nn.Module:
    """The digits CNN in float64, so parity checks can be tight."""
    return digits_cnn().double()


@pytest.fixture
def resnet18() -> nn.Module:
    return make_resnet18()


@pytest.fixture
def resnet18_distinct() -> nn.Module:
    return make_resnet18(distinct_relus=True).double()


DIGITS_REPORT_OPTIONS = ["--render-steps", "16", "--n-draws", "5", "--no-progress"]
"""Lighter report settings than the command's defaults, to keep the suite fast."""


@pytest.fixture(scope="session")
def digits_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The default command on the digits CNN (digit 3): its output folder and what it printed."""
    out = tmp_path_factory.mktemp("digits-report") / "report"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["circuit", "--target", "3", "--out", str(out), *DIGITS_REPORT_OPTIONS]) == 0
    return out, printed.getvalue()


@pytest.fixture(scope="module")
def one_thread():
    """Small batches: one intra-op thread (two spin against each other on a busy 2-core CPU).
    Used by a module with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
