"""One check that a circuit belongs to a model and data, before any work on them.

A saved circuit names layers, groups of neurons in them, exemplar images by
data-set index with crop boxes, and a class. :func:`check_circuit_fits`
checks all of it against a model and data with one forward pass on the
first image, and names what does not fit: the model (a layer it lacks, a
group whose neurons its layer does not have, a class beyond its outputs) or
the data (an image index beyond them, a crop box outside their images).
:func:`~captum_groups.report.write_report` calls it first, and the
command line maps its parameters to options, so Python and the command
give the same message.
"""

from __future__ import annotations

from torch import nn

from .._model.capture import LayerCapture, record
from .._validation.errors import ParameterError
from ..circuits import Circuit
from ..circuits._passes import model_device_dtype
from ..data import Data, examples_at, n_examples

__all__ = ["check_circuit_fits"]


def check_circuit_fits(model: nn.Module, circuit: Circuit, data: Data) -> None:
    """Refuse a circuit that does not belong to a model and data: by ``model`` (a layer
    the model lacks), ``data`` (an image index beyond them) or ``circuit`` (a group, crop
    box or class that does not fit).

    Examples
    --------
    >>> from captum_groups import NeuronGroup
    >>> from captum_groups.datasets import digits_cnn, load_digits
    >>> model, (x, _) = digits_cnn(), load_digits("test")
    >>> fits = Circuit(3, ["relu3"], {"g": NeuronGroup("relu3", [0, 1])}, {("g", "target"): 1.0})
    >>> check_circuit_fits(model, fits, x)
    >>> wide = Circuit(3, ["relu3"], {"g": NeuronGroup("relu3", [99])}, {("g", "target"): 1.0})
    >>> check_circuit_fits(model, wide, x)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    captum_groups.ParameterError: node 'g' does not fit the model: ...
    """
    circuit.check_neurflow("write_report")
    try:
        circuit.check_model(model)
    except ParameterError as error:
        raise ParameterError("model", f"the circuit does not fit the model: {error}") from None
    size = n_examples(data)
    indices = [i for items in circuit.exemplars.values() for i, _ in items]
    if size is not None and indices and max(indices) >= size:
        raise ParameterError(
            "data",
            f"the circuit's exemplars refer to image {max(indices)}, but the data hold {size} "
            f"images; pass the data the circuit was built on",
        )
    first = examples_at(data, [0]).to(model_device_dtype(model)[0])
    captures = {layer: LayerCapture(model.get_submodule(layer)) for layer in circuit.layers}
    output = record(model, first, list(captures.values()))
    for node, group in circuit.nodes.items():
        try:
            group.validate_output(captures[group.layer].output[0])
        except (ValueError, TypeError) as error:
            raise ParameterError(
                "circuit", f"node {node!r} does not fit the model: {error}"
            ) from None
    height, width = first.shape[-2:]
    for node, items in circuit.exemplars.items():
        for _, (top, left, box_h, box_w) in items:
            if top + box_h > height or left + box_w > width:
                raise ParameterError(
                    "circuit",
                    f"node {node!r} has an exemplar crop box {(top, left, box_h, box_w)} outside "
                    f"the {height}x{width} images of the data; pass the data (and image size) "
                    f"the circuit was built on",
                )
    if isinstance(circuit.target, int) and not 0 <= circuit.target < output.shape[1]:
        raise ParameterError(
            "circuit",
            f"the circuit's class {circuit.target} is out of range: the model has "
            f"{output.shape[1]} outputs (0 to {output.shape[1] - 1})",
        )
