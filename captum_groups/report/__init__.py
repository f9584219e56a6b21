"""The circuit report: one self-contained ``report.html`` and ``circuit.json`` next to it.

This package only assembles: the numbers come from :mod:`captum_groups.circuits`
(fidelity) and :mod:`captum_groups.attr` (shares of the target), the pictures
from :mod:`captum_groups.viz`. Nothing in the package imports it except the
command line (:mod:`captum_groups.cli`).

- :func:`write_report`: compute, render and write the report, as set by
  :class:`ReportSettings`.
- :func:`~captum_groups.report.assemble.assemble`: the report's content.
- :func:`~captum_groups.report.layout.layered_layout`: where nodes and edges go.
- :func:`write_stream_report`: the report of a transformer's circuit through the
  residual stream.
- :func:`build_atlas`: the circuits of every class, across processes and
  machines (:mod:`captum_groups.distributed`), with an index page.
"""

from .assemble import ReportContent, assemble, target_shares
from .atlas import AtlasResult, build_atlas
from .layout import GraphLayout, layered_layout
from .settings import ReportSettings
from .stream_report import write_stream_report
from .write import ReportFiles, write_report

__all__ = [
    "AtlasResult",
    "GraphLayout",
    "ReportContent",
    "ReportFiles",
    "ReportSettings",
    "assemble",
    "build_atlas",
    "layered_layout",
    "target_shares",
    "write_report",
    "write_stream_report",
]
