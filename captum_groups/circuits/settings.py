"""CircuitSettings: how a circuit is built, defined once.

:func:`~captum_groups.build_circuit`, :func:`~captum_groups.build_circuits`,
the ``captum-groups`` command and the distributed driver all construct one
:class:`CircuitSettings` and pass it whole; a circuit saves it in its JSON
(``Circuit.settings``), so its report reuses the same integration steps and
seed.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from collections.abc import Mapping
from typing import Any

from .._validation.checks import (
    METHOD,
    SEED,
    Choice,
    Count,
    Flag,
    Number,
    Satisfies,
    check_quadrature,
)
from .._validation.settings import FrozenMapping, Settings, documented, setting
from ..discovery.crops import NEURFLOW_SCALES
from ._ids import EAP_PATHS

__all__ = ["DEFAULT_STEPS", "CircuitSettings", "grouping_record", "rebuilt_grouping"]

DEFAULT_STEPS = 24
"""Gauss-Legendre steps of the default integration.

NeurFlow uses 50. ``benchmarks/study_quadrature.py`` compared Captum's rules
and step counts with 50 Gauss-Legendre steps, end to end: 24 steps found
identical core neurons at every layer for the resnet50 reference setting and
for all ten classes of the digits CNN (two layer/tau settings); 16 and 32
steps each changed one core set of the 155 on the digits, Riemann rules
more. ``n_steps=50`` reproduces NeurFlow's integration exactly."""


def _LIGHTER(default: Any, why: str) -> dict[str, tuple[Any, str]]:  # noqa: N802
    """The commands that build circuits (``circuit``, ``atlas``) default to ``default``."""
    return {"circuit": (default, why), "atlas": (default, why)}


_REPEATABLE = {
    command: (0, "a command gives the same output every time")
    for command in ("circuit", "atlas", "attribute")
}
"""The commands seed their random draws: one command line, one output."""


_REBUILDABLE = ("captum_groups.", "sklearn.")
"""Modules whose estimators a saved circuit's settings rebuild (no other module is imported
on reading a JSON file)."""


def _n_groups_ok(value: object) -> bool:
    if value is None or Count(1).accepts(value):
        return True
    return isinstance(value, Mapping) and all(
        isinstance(layer, str) and Count(1).accepts(n) for layer, n in value.items()
    )


def _is_estimator(value: object) -> bool:
    return callable(getattr(value, "fit", None)) and callable(getattr(value, "get_params", None))


def _is_record(value: object) -> bool:
    return isinstance(value, Mapping) and set(value) == {"estimator", "params"}


def _scales_ok(value: object) -> bool:
    return (
        isinstance(value, tuple)
        and bool(value)
        and all(Number(0, 1).accepts(s) and s > 0 for s in value)
    )


def _json_value(value: Any) -> Any:
    """A parameter as a JSON value, or its repr when it has none."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError):
        return repr(value)


def grouping_record(grouping: Any) -> Any:
    """A grouping estimator as JSON: ``{"estimator": "module.Class", "params": {...}}``."""
    if grouping is None or _is_record(grouping):
        return grouping
    kind = type(grouping)
    params = {name: _json_value(v) for name, v in grouping.get_params(deep=False).items()}
    return {"estimator": f"{kind.__module__}.{kind.__qualname__}", "params": params}


def rebuilt_grouping(record: Any) -> Any:
    """The estimator a record describes, when it is one of this package's or scikit-learn's;
    otherwise the record itself (it describes the circuit; building with it is refused)."""
    if not _is_record(record):
        return record
    module, _, name = str(record["estimator"]).rpartition(".")
    if not module.startswith(_REBUILDABLE):
        return record
    try:
        estimator = getattr(importlib.import_module(module), name)(**record["params"])
    except (ImportError, AttributeError, TypeError, ValueError):
        return record
    return estimator


@documented
@dataclasses.dataclass(frozen=True)
class CircuitSettings(Settings):
    """How NeurFlow's circuit of neuron groups is built (Cao et al., ICLR 2025).

    Frozen and validated: a bad value raises a
    :class:`~captum_groups.ParameterError` naming the field. Change a copy
    with ``replace``. ``to_dict`` / ``from_dict`` give and read plain
    JSON values (a grouping estimator as its class and parameters).

    Examples
    --------
    >>> settings = CircuitSettings(tau=4, k=20)
    >>> settings.replace(n_steps=50).n_steps, settings.tau
    (50, 4)
    >>> CircuitSettings(tau=0)
    Traceback (most recent call last):
    ...
    captum_groups.ParameterError: tau must be a positive int, got 0
    """

    tau: int = setting(
        16,
        Count(1),
        "Core neurons per upper unit (NeurFlow: 16; the most per unit when adaptive).",
        type_name="int",
        cli={"defaults": _LIGHTER(8, "a lighter first circuit (NeurFlow: 16)")},
    )
    k: int = setting(
        50,
        Count(1),
        "Exemplar crops per neuron, its top-k crops by activation (NeurFlow: 50).",
        type_name="int",
        cli={"defaults": _LIGHTER(30, "a lighter first circuit (NeurFlow: 50)")},
    )
    n_groups: int | Mapping[str, int] | None = setting(
        None,
        Satisfies(_n_groups_ok, "a positive int, a mapping of layer name to one, or None"),
        "Groups per layer (one number, or one per layer name); None chooses them by "
        "silhouette score.",
        type_name="int, mapping of str to int, or None",
        cli={"type": int},
    )
    grouping: Any = setting(
        None,
        Satisfies(
            lambda v: v is None or _is_estimator(v) or _is_record(v),
            "None or an estimator with fit, get_params and groups_",
        ),
        "How a layer's critical neurons are grouped: None for NeurFlow's ConceptClustering, "
        "or another grouping estimator (e.g. CoactivationClustering), fitted on the critical "
        "neurons' means over all crops.",
        type_name="estimator or None",
        cli={"skip": True},
    )
    scales: tuple[float, ...] = setting(
        NEURFLOW_SCALES,
        Satisfies(_scales_ok, "fractions in (0, 1], a non-empty tuple of them"),
        "Crop sides as fractions of the image side.",
        type_name="tuple of float",
        cli={"type": float, "nargs": "+"},
    )
    n_steps: int = setting(
        DEFAULT_STEPS,
        Count(1),
        "Integration steps (NeurFlow: 50; 24 found NeurFlow's core neurons exactly in the "
        "study of DEFAULT_STEPS). The report's shares and overlays use them too.",
        type_name="int",
        cli={"defaults": {"attribute": (32, "smoother maps than the circuit's scores need")}},
    )
    method: str = setting(
        "gausslegendre",
        METHOD,
        "Captum's integral approximation (NeurFlow: gausslegendre).",
        type_name="str",
        cli={"choices": METHOD.options},
    )
    adaptive: bool = setting(
        False, Flag(), "NeurFlow's optimal tau per upper unit.", type_name="bool"
    )
    tolerance: float = setting(
        0.05,
        Number(0, 1),
        "Acceptable error range of the adaptive rule.",
        type_name="float",
        cli={"type": float},
    )
    predicted_only: bool = setting(
        True,
        Flag(),
        "For a class target, keep only the images the model predicts as that class.",
        type_name="bool",
    )
    thumbnails: int = setting(
        5,
        Count(1),
        "Exemplars stored per group (data-set index and crop box), shown by the report.",
        type_name="int",
        cli={"defaults": _LIGHTER(6, "one row of exemplars per card in the report")},
    )
    corrupt: str | None = setting(
        None,
        Satisfies(
            lambda v: v is None or (isinstance(v, str) and bool(v.strip())),
            "None, 'resample', 'shuffle' or the name of the corrupted data",
        ),
        "The corrupted input of a circuit through the residual stream "
        "(build_stream_circuit): 'resample' (other examples; for a class, those predicted "
        "as another class), 'shuffle' (each token sequence reordered), or the corrupted "
        "data's name (a tensor file of one corrupted input per example, 'given'); None "
        "for NeurFlow's circuits.",
        type_name="str or None",
        cli={"type": str, "metavar": "resample|shuffle|FILE"},
    )
    mlp_groups: str | None = setting(
        None,
        Choice((None, "neurflow")),
        "The MLP nodes of a circuit through the residual stream: None, one node per MLP; "
        "'neurflow', each MLP's tau core neurons for the target grouped NeurFlow's way "
        "(ConceptClustering on their top-k (example, position) activations; n_groups per "
        "layer), its other neurons one node.",
        type_name="str or None",
        cli={"type": str, "choices": ("neurflow",)},
    )
    eap_steps: int = setting(
        5,
        Count(1),
        "Integration steps of EAP-IG, the scores of a circuit through the residual stream "
        "(Hanna et al.: 5); 1 is EAP, the gradient at the clean run.",
        type_name="int",
    )
    eap_path: str = setting(
        "activations",
        Choice(EAP_PATHS),
        "What EAP-IG interpolates between the corrupted and the clean run: 'activations', "
        "each node's output on its own (eap_steps runs per node; its edges' scores sum "
        "to patching it), or 'inputs', the embedding (Hanna et al.'s EAP-IG-inputs; "
        "eap_steps runs in all).",
        type_name="str",
        cli={"choices": EAP_PATHS},
    )
    random_state: int | None = setting(
        None,
        SEED,
        "Seed of grouping estimators that take one, and of the report's random draws and "
        "renderings.",
        type_name="int or None",
        cli={"type": int, "defaults": _REPEATABLE},
    )
    batch_size: int = setting(
        256,
        Count(1),
        "Crops (and images) per forward pass. Results do not depend on it beyond "
        "floating-point rounding: the same core neurons and groups, edge weights equal to "
        "about 1e-8 relative (float32 sums taken in another order; tested with 17, 64 and "
        "256 on the digits CNN).",
        type_name="int",
    )
    internal_batch_size: int | None = setting(
        None,
        Count(1, optional=True),
        "Rows (exemplar crops x steps) per integration pass; None sizes it to about 4 "
        "million lower-layer activation elements.",
        type_name="int or None",
        cli={"type": int},
    )

    def __post_init__(self) -> None:
        if isinstance(self.scales, list):
            object.__setattr__(self, "scales", tuple(self.scales))
        if isinstance(self.n_groups, Mapping):  # held immutably: the settings are frozen
            object.__setattr__(self, "n_groups", FrozenMapping(self.n_groups))
        super().__post_init__()

    def _check_together(self) -> None:
        check_quadrature(self.n_steps, self.method)

    def groups_for(self, layer: str) -> int | None:
        """The number of groups asked for one layer (None: chosen by silhouette)."""
        return self.n_groups.get(layer) if isinstance(self.n_groups, Mapping) else self.n_groups

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values; a grouping estimator as ``{"estimator", "params"}``."""
        return {**super().to_dict(), "grouping": grouping_record(self.grouping)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], field: str = "settings") -> CircuitSettings:
        """Settings from :meth:`to_dict`; the package's and scikit-learn's estimators are
        rebuilt, another estimator stays a record (pass ``grouping=`` to build with it)."""
        if isinstance(data, Mapping) and "grouping" in data:
            data = {**data, "grouping": rebuilt_grouping(data["grouping"])}
        return super().from_dict(data, field)
