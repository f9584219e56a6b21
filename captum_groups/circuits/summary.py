"""The first pass of a circuit build: each target's images (as the model predicts them, or
from a given routing), and the summaries of their exemplar crops in every circuit layer."""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch
from torch import Tensor, nn

from .._validation.checks import ParameterError
from ..discovery.crops import crop_boxes
from ..groups import NeuronGroup
from ._passes import (
    ImageReader,
    Rebatcher,
    Selection,
    Summariser,
    TargetKey,
)
from .requests import (
    _check_forward_order,
    none_predicted,
)
from .routing import ClassRouting
from .settings import CircuitSettings


class _SummaryPass:
    """The first pass: each target's images, and their crops' summaries.

    Class targets read the images the model predicts as them: predicted here
    in the fixed groups of :func:`.routing.prediction_groups`, or looked up in
    a given :class:`~.routing.ClassRouting` (then only those images are read).
    Other targets (groups, or every image) read all images.
    """

    def __init__(
        self,
        model: nn.Module,
        reader: ImageReader,
        layers: list[str],
        targets: list[TargetKey],
        settings: CircuitSettings,
        routing: ClassRouting | None,
    ) -> None:
        self.model, self.reader, self.layers, self.targets = model, reader, layers, targets
        self.settings, self.routing = settings, routing
        self.predicted = [t for t in targets if isinstance(t, int) and settings.predicted_only]
        self.everything = [t for t in targets if t not in self.predicted]
        self.summarisers: dict[Any, Summariser] = {}
        self.predictions = Rebatcher(settings.batch_size)
        self.counts: Counter[int] = Counter()
        self.boxes: Tensor | None = None

    def _summariser(self, key: Any, keyed_targets: list[TargetKey]) -> Summariser:
        if key not in self.summarisers:
            assert self.boxes is not None
            summarised = {name: self.model.get_submodule(name) for name in self.layers}
            for target in keyed_targets:
                if isinstance(target, NeuronGroup):
                    summarised[str(target.layer)] = target.resolve(self.model)
            selection = Selection(list(keyed_targets), self.boxes)
            self.summarisers[key] = Summariser(
                self.model, selection, summarised, self.settings.batch_size, self.reader.total
            )
        return self.summarisers[key]

    def _route(self, ids: Tensor, images: Tensor) -> None:
        """Predict a fixed group of images; each class target gets those predicted as it."""
        with torch.no_grad():
            classes = self.model(images).argmax(1)
        self.counts.update(classes.tolist())
        self._push_predicted(ids, images, classes)

    def _push_predicted(self, ids: Tensor, images: Tensor, classes: Tensor) -> None:
        for target in self.predicted:
            chosen = classes.to(ids.device) == target
            if chosen.any():
                self._summariser(target, [target]).push(
                    ids[chosen], images[chosen.to(images.device)]
                )

    def _images(self) -> list[int] | None:
        """The images to read: those routed to the class targets, when that is all."""
        if self.routing is None or not self.predicted or self.everything:
            return None
        self.counts = self.routing.counts()
        return sorted({i for t in self.predicted for i in self.routing.images_of(t)})

    def run(self) -> dict[TargetKey, Selection]:
        """Read the data once; each target's selection."""
        known = self.routing is not None and self._images() is not None
        lookup = self.routing.state_dict() if known else None
        for ids, images in self.reader.read(self._images(), "summarising crops"):
            # the first batch checks the layers and fixes the crop boxes
            if self.boxes is None:
                _check_forward_order(self.model, self.layers, self.targets, images)
                self.boxes = crop_boxes(images.shape[-2], images.shape[-1], self.settings.scales)
            if self.everything:
                self._summariser("all", self.everything).push(ids, images)
            if lookup is not None:
                position = torch.searchsorted(lookup["indices"], ids.cpu())
                self._push_predicted(ids, images, lookup["classes"][position])
            elif self.predicted:
                for group in self.predictions.push(ids, images):
                    self._route(*group)
        if self.boxes is None:
            raise ParameterError("data", "data is empty: it holds no images")
        for group in self.predictions.flush():
            self._route(*group)
        selections = {key: s.finish() for key, s in self.summarisers.items()}
        for target in self.predicted:
            if target not in selections:
                raise ParameterError("target", none_predicted(target, self.counts))
        return {t: selections[t if t in self.predicted else "all"] for t in self.targets}
