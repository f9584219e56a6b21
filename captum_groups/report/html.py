"""The report's HTML from its content, through one Jinja2 template.

Jinja2 rather than ``string.Template``: the report has loops (a card per
group, an SVG element per node and edge, a row per fidelity scope) and
conditionals (renderings may be left out), which ``string.Template`` cannot
express, so the markup would have to be built by string concatenation in
Python. Jinja2 keeps all markup in the template and escapes every value
(group labels, file paths, the command line) by default. It is already
installed with PyTorch, so it adds no new install.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from ..circuits import TARGET
from .assemble import ReportContent

__all__ = ["environment", "render_html"]


def _signed(value: float, digits: int = 3) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:+.{digits}f}"


def _percent(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{100 * value:.1f}%"


def environment() -> Environment:
    """The Jinja2 environment of the package's pages: escaping on, the number filters."""
    jinja = Environment(
        loader=PackageLoader("captum_groups.report", "templates"),
        autoescape=select_autoescape(["html", "j2"], default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    jinja.filters["signed"] = _signed
    jinja.filters["percent"] = _percent
    return jinja


def render_html(content: ReportContent, provenance: Mapping[str, Any]) -> str:
    """The self-contained report page.

    Parameters
    ----------
    content : ReportContent
        What :func:`~captum_groups.report.assemble.assemble` computed.
    provenance : mapping
        ``command`` (str or None), ``next_steps`` (list of (what, command)),
        ``timing`` (list of (what, seconds)), ``parameters`` (mapping),
        ``versions`` (mapping), ``created`` (str), ``device`` (str).
    """
    card_of = {TARGET: content.target.key, **{card.node: card.key for card in content.cards}}
    template = environment().get_template("report.html.j2")
    return template.render(
        overlapping={card.node for card in content.cards if card.overlaps},
        content=content,
        layout=content.layout,
        card_of=card_of,
        target_id=TARGET,
        provenance=provenance,
    )
