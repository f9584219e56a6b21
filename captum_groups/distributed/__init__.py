"""Many processes and machines: portable state, torch.distributed and Ray.

Every streaming statistic of the package has a ``state_dict()`` of tensors
and plain data (layers by name, never the model) and a ``merge`` over any
disjoint shards: :class:`~captum_groups.discovery.ExemplarMiner`,
:class:`~captum_groups.circuits.ClassRouting`, the crop summaries
(``captum_groups.circuits._passes.Selection``). So work spreads over
processes by an existing engine and merges into the single-process result.

- ``backends``: where work runs (this process, the ranks of a
  ``torchrun`` job, a Ray cluster), behind one interface.
- :func:`mine_exemplars`: a layer's exemplars over a whole data set,
  data-parallel, merged on every rank.
- The atlas of every class, :func:`captum_groups.report.build_atlas` and
  ``captum-groups atlas``, runs on these backends.
"""

from .backends import (
    Backend,
    LocalBackend,
    RayBackend,
    TorchBackend,
    Workload,
    balanced,
    make_backend,
)
from .mining import mine_exemplars

__all__ = [
    "Backend",
    "LocalBackend",
    "RayBackend",
    "TorchBackend",
    "Workload",
    "balanced",
    "make_backend",
    "mine_exemplars",
]
