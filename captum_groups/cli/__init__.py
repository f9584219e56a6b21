"""``captum-groups``: build a circuit and write its report, from the command line.

Subcommands, one module each:

- ``captum-groups circuit --target 3 --out report`` (``circuit``) builds
  NeurFlow's circuit of a class (:func:`~captum_groups.build_circuit`) and
  writes ``report.html`` and ``circuit.json``
  (:func:`~captum_groups.report.write_report`). Without ``--model`` it runs
  on the embedded digits CNN and digits data.
- ``captum-groups report circuit.json --model ... --data ...``
  (``report``) writes the report of a saved circuit again (the circuit
  JSON is read, never unpickled), with the integration steps and seed the
  circuit was built with.
- ``captum-groups attribute --groups groups.json ...`` (``attribute``)
  writes one PNG per group: the group's attribution map over each image.
- ``captum-groups classes`` (``classes``) counts the predicted classes;
  ``captum-groups atlas`` (``atlas``) builds the circuits of every class.

The options are made from the settings classes (:class:`~captum_groups.CircuitSettings`,
:class:`~captum_groups.report.ReportSettings`, ``Source``):
one option per field, with the field's name, doc and default, except the few
deliberate differences of :data:`CLI_DEFAULTS`, which ``--help`` shows. Bad
usage exits with code 2 and a one-line message naming the option; a refused
setting is mapped to its option by the parameter's name, never by the text
of the message. ``options`` makes options from settings and
``inputs`` loads models, data and files.
"""

import warnings

# kornia, imported by Lucent, scripts functions with the deprecated torch.jit.script on import
warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.* is deprecated")

from .defaults import CLI_DEFAULTS, COMMAND_OPTIONS  # noqa: E402
from .main import build_parser, main, threads  # noqa: E402

__all__ = ["CLI_DEFAULTS", "COMMAND_OPTIONS", "build_parser", "main", "threads"]
