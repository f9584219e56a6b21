"""ReportSettings: what the report computes beyond the circuit, defined once."""

from __future__ import annotations

import dataclasses

from .._validation.checks import SEED, Count
from .._validation.settings import Settings, documented, setting
from ..circuits import Circuit
from ..circuits.settings import DEFAULT_STEPS

__all__ = ["RENAMED", "ReportSettings"]

RENAMED = {
    "fidelity_draws": "n_draws",
    "fidelity_images": "max_images",
    "fidelity_points": "n_points",
}
"""Former keyword names of the report's settings (deprecated: they work and warn)."""


@documented
@dataclasses.dataclass(frozen=True)
class ReportSettings(Settings):
    """How :func:`~captum_groups.report.write_report` evaluates and draws a circuit.

    The integration steps and the seed default to the circuit's own
    (``circuit.settings``), so a report written again from a saved circuit
    computes the same shares as the first.

    Examples
    --------
    >>> ReportSettings(render_steps=0).n_draws
    30
    """

    render_size: int | None = setting(
        None,
        Count(1, optional=True),
        "Side of the Lucent renderings in pixels; None: the image side, at least 24, at most 128.",
        type_name="int or None",
        cli={"type": int, "metavar": "PX"},
    )
    render_steps: int = setting(
        128,
        Count(0),
        "Lucent optimization steps per rendering; 0 leaves the renderings out.",
        type_name="int",
    )
    n_draws: int = setting(
        30,
        Count(1),
        "Random draws per fidelity point, and random subsets per size of the edge-weight fidelity.",
        type_name="int",
    )
    max_images: int = setting(
        512,
        Count(1),
        "Most evaluation images (those the model predicts as the target class) for the "
        "fidelity and the shares.",
        type_name="int",
    )
    n_points: int = setting(
        5,
        Count(1),
        "Most points per fidelity curve: the circuit pruned to the top-j inputs of every "
        "node, for j from 1 to the whole circuit.",
        type_name="int",
    )
    n_steps: int | None = setting(
        None,
        Count(1, optional=True),
        "Integration steps of the shares and attribution overlays; None: the circuit's.",
        type_name="int or None",
        cli={"type": int},
    )
    random_state: int | None = setting(
        None,
        SEED,
        "Seed of the random draws and the renderings; None: the circuit's (0 if it has none).",
        type_name="int or None",
        cli={"type": int},
    )
    batch_size: int = setting(64, Count(1), "Images per forward pass.", type_name="int")

    def for_circuit(self, circuit: Circuit) -> ReportSettings:
        """These settings with the integration steps and seed the circuit was built with
        filled in where they are None (older circuits: their ``params``, else the defaults).

        Examples
        --------
        >>> from captum_groups import CircuitSettings, NeuronGroup
        >>> circuit = Circuit(0, ["fc"], {"a": NeuronGroup("fc", [1])}, {},
        ...                   settings=CircuitSettings(n_steps=8, random_state=3))
        >>> resolved = ReportSettings().for_circuit(circuit)
        >>> resolved.n_steps, resolved.random_state
        (8, 3)
        """
        built = circuit.settings
        steps = built.n_steps if built else circuit.params.get("n_steps", DEFAULT_STEPS)
        seed = built.random_state if built else circuit.params.get("random_state")
        return self.replace(
            n_steps=self.n_steps if self.n_steps is not None else steps,
            random_state=self.random_state if self.random_state is not None else (seed or 0),
        )
