"""Parameters the attribution classes share, described once.

Each class writes in its docstrings only what is its own. When a class is
created, :func:`complete` rebuilds the ``Parameters`` section of its
docstring (for the constructor) and of its ``attribute`` methods: one entry
per parameter, in signature order, the class's own entries as written and the
shared ones from :data:`PARAMETERS`. So ``help()`` shows every parameter, a
shared parameter reads the same everywhere, and a parameter without a
description, or a description without a parameter, fails at import.
"""

from __future__ import annotations

import inspect
import re

__all__ = ["PARAMETERS", "RETURNS_LIKE_INPUTS", "complete"]

PARAMETERS: dict[str, str] = {
    "forward_func": """forward_func : callable
    The model, or any function that runs it.""",
    "model": """model : nn.Module
    The model (the method needs its modules).""",
    "layer": """layer : nn.Module or str
    The layer of the groups: a module of the model or its dotted name.""",
    "device_ids": """device_ids : list of int, optional
    Accepted for signature compatibility with Captum.""",
    "multiply_by_inputs": """multiply_by_inputs : bool
    Multiply by ``inputs - baselines`` (global attribution), as in Captum.""",
    "inputs": """inputs : Tensor or tuple of Tensor
    Model inputs, batch first.""",
    "group": """group : NeuronGroup, GroupSet, sequence of NeuronGroup, or neuron_selector
    What to attribute. Several groups add a group axis after the batch axis.""",
    "groups": """groups : NeuronGroup, GroupSet or list of NeuronGroup
    Groups of the attributed layer.""",
    "baselines": """baselines : scalar, Tensor or tuple, optional
    The reference inputs (zeros by default), as in Captum.""",
    "target": """target : int, tuple, Tensor, list or NeuronGroup, optional
    What to explain: a Captum ``target`` on the model output, or a group of a
    layer that runs after the attributed one.""",
    "additional_forward_args": """additional_forward_args : optional
    Extra arguments for the model, as in Captum.""",
    "n_steps": """n_steps : int
    Integration steps.""",
    "method": """method : str
    Captum's approximation method (``"gausslegendre"``, ``"riemann_*"``).""",
    "internal_batch_size": """internal_batch_size : int, optional
    Examples x steps evaluated per forward pass, as in Captum.""",
    "attribute_to_neuron_input": """attribute_to_neuron_input : bool
    Select the groups from the layer's input instead of its output.""",
    "attribute_to_layer_input": """attribute_to_layer_input : bool
    Attribute to the layer's input instead of its output.""",
    "custom_attribution_func": """custom_attribution_func : callable, optional
    Combines multipliers, inputs and baselines, as in Captum.""",
    "grad_kwargs": """grad_kwargs : dict, optional
    Passed to ``torch.autograd.grad``.""",
    "group_batch_size": """group_batch_size : int, optional
    Groups per shared pass; bounds memory (all at once if None).""",
}
"""Shared parameter descriptions, NumPy style, keyed by parameter name."""

RETURNS_LIKE_INPUTS = """Tensor or tuple of Tensor
    Shaped like ``inputs``; ``(N, G, *inputs.shape[1:])`` for several groups."""
"""What the ``attribute`` of every ``Group*`` class returns, unless it says otherwise."""

_HEADER = re.compile(r"^(\w[\w ]*)\n-+\n", re.MULTILINE)


def _sections(doc: str) -> list[tuple[str, str]]:
    """A cleaned docstring as (title, body) pairs; the text before the first section has
    the title ``""``."""
    marks = list(_HEADER.finditer(doc))
    pieces = [("", doc[: marks[0].start()] if marks else doc)]
    for mark, following in zip(marks, [*marks[1:], None], strict=False):
        end = following.start() if following is not None else len(doc)
        pieces.append((mark.group(1), doc[mark.end() : end]))
    return pieces


def _entries(body: str) -> dict[str, str]:
    """The entries of a Parameters section, keyed by each name they describe (an entry
    may describe several: ``lower_layer, upper_layer : nn.Module or str``)."""
    entries: list[list[str]] = []
    for line in body.strip("\n").splitlines():
        if line and not line[0].isspace():
            entries.append([line])
        elif entries:
            entries[-1].append(line)
    return {
        name.strip(): "\n".join(entry).rstrip()
        for entry in entries
        for name in entry[0].split(" : ")[0].split(", ")
    }


def complete(
    doc: str | None, signature: inspect.Signature, owner: str, returns: str | None = None
) -> str | None:
    """``doc``, cleaned, with a Parameters section that describes every parameter of
    ``signature`` in order (the written entries, then :data:`PARAMETERS`), and a Returns
    section (``returns``) if it has none.

    Examples
    --------
    >>> def attribute(self, inputs, n_samples=5):
    ...     '''Example.
    ...
    ...     Parameters
    ...     ----------
    ...     n_samples : int
    ...         Random samples.
    ...     '''
    >>> print(complete(attribute.__doc__, inspect.signature(attribute), "attribute"))
    Example.
    <BLANKLINE>
    Parameters
    ----------
    inputs : Tensor or tuple of Tensor
        Model inputs, batch first.
    n_samples : int
        Random samples.
    """
    if doc is None:
        return None
    names = [
        p.name
        for p in signature.parameters.values()
        if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    sections = _sections(inspect.cleandoc(doc) + "\n")
    written = _entries("".join(body for title, body in sections if title == "Parameters"))
    unknown = sorted(set(written) - set(names))
    if unknown:
        raise TypeError(f"{owner}: the docstring describes {unknown}, which it does not take")
    entries: list[str] = []
    for name in names:
        entry = written.get(name, PARAMETERS.get(name))
        if entry is None:
            raise TypeError(f"{owner}: parameter {name!r} is not described")
        if entry not in entries:
            entries.append(entry)
    titles = [title for title, _ in sections]
    at = titles.index("Parameters") if "Parameters" in titles else 1
    sections = [s for s in sections if s[0] != "Parameters"]
    if entries:
        sections.insert(at, ("Parameters", "\n".join(entries) + "\n\n"))
    if returns is not None and "Returns" not in titles:
        sections.insert(at + 1, ("Returns", returns + "\n\n"))
    if not sections[0][1].endswith("\n\n"):
        sections[0] = ("", sections[0][1].rstrip("\n") + "\n\n")
    text = "".join(body if not t else f"{t}\n{'-' * len(t)}\n{body}" for t, body in sections)
    return text.rstrip("\n")
