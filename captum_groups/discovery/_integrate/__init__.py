"""Shortcuts of the core-score integration (:class:`~captum_groups.discovery.CoreScores`),
private to :mod:`captum_groups.discovery`.

- ``affine_prefix``: the affine start of the sub-network between two layers
  (convolutions, folded batch norm, the residual identity) runs once per
  crop, not once per integration step: along a straight path from zero it is
  affine in the step.
- ``channel_head``: the last 1x1 convolution or linear map is evaluated at
  each row's own target channel only.
"""
