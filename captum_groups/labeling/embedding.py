"""Labels from a vision-language model the user has locally (CLIP-style embeddings)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from .base import GroupEvidence, GroupLabel, Labeler

__all__ = ["EmbeddingLabeler"]


def _embedded(values: object, rows: int, what: str) -> Tensor:
    if not isinstance(values, Tensor) or values.ndim != 2 or values.shape[0] != rows:
        shape = tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__
        raise ValueError(f"{what} must return a ({rows}, D) tensor, got {shape}")
    if not torch.isfinite(values).all():
        raise ValueError(f"{what} returned NaN or inf values")
    return torch.nn.functional.normalize(values.detach().float().cpu(), dim=1)


class EmbeddingLabeler(Labeler):
    """Zero-shot labels from image and text embeddings (CLIP-style), computed locally.

    NeurFlow labels a group by showing a vision-language model its
    representative crops. With a contrastive image-text model such as CLIP
    (Radford et al., 2021) the same question is a zero-shot classification:
    each exemplar crop is embedded, each candidate label is embedded through
    a prompt template, and the label with the highest mean probability over
    the crops (softmax of cosine similarities over ``temperature``) wins.
    Nothing is downloaded: the user passes the two embedding functions of a
    model they already have, e.g.
    ``image_embedding=lambda x: clip.encode_image(preprocess(x))`` and
    ``text_embedding=lambda t: clip.encode_text(tokenize(t))``.

    Parameters
    ----------
    image_embedding : callable
        (K, C, H, W) crops, as the model saw them -> (K, D) embeddings.
    text_embedding : callable
        list of T prompts -> (T, D) embeddings.
    candidates : sequence of str
        The labels to choose from.
    template : str
        Prompt with one ``{}`` for the label, e.g. ``"a photo of {}"``.
    temperature : float
        Softmax temperature on cosine similarities (CLIP: 0.01).
    batch_size : int
        Crops per call of ``image_embedding``.

    Notes
    -----
    The score is the winning label's mean probability over the crops; the
    evidence holds every candidate's probability and mean cosine similarity.

    Examples
    --------
    >>> from captum_groups import NeuronGroup
    >>> from captum_groups.labeling import GroupEvidence
    >>> def image_embedding(x):  # brightness of the top and the bottom half
    ...     return torch.stack([x[:, :, :2].mean((1, 2, 3)), x[:, :, 2:].mean((1, 2, 3))], 1)
    >>> words = {"top": [1.0, 0.0], "bottom": [0.0, 1.0]}
    >>> labeler = EmbeddingLabeler(image_embedding, lambda t: torch.tensor([words[w] for w in t]),
    ...                            ["top", "bottom"])
    >>> crops = torch.zeros(3, 1, 4, 4)
    >>> crops[:, :, 2:] = 1.0  # bright bottom halves
    >>> evidence = GroupEvidence("g", NeuronGroup("l", [0]), None, None, crops, None, None, None)
    >>> labeler.label(evidence).label
    'bottom'
    """

    def __init__(
        self,
        image_embedding: Callable[[Tensor], Tensor],
        text_embedding: Callable[[list[str]], Tensor],
        candidates: Sequence[str],
        template: str = "{}",
        temperature: float = 0.01,
        batch_size: int = 64,
    ) -> None:
        if not callable(image_embedding) or not callable(text_embedding):
            raise TypeError("image_embedding and text_embedding must be callables")
        candidates = list(candidates)
        if not candidates or not all(isinstance(c, str) and c for c in candidates):
            raise ValueError("candidates must be a non-empty sequence of non-empty strings")
        if template.count("{}") != 1:
            raise ValueError(f"template must hold exactly one '{{}}', got {template!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature!r}")
        self.image_embedding = image_embedding
        self.text_embedding = text_embedding
        self.candidates = candidates
        self.template = template
        self.temperature = temperature
        self.batch_size = batch_size
        self._texts: Tensor | None = None

    def _text_embeddings(self) -> Tensor:
        if self._texts is None:
            prompts = [self.template.format(c) for c in self.candidates]
            with torch.no_grad():
                embedded = self.text_embedding(prompts)
            self._texts = _embedded(embedded, len(prompts), "text_embedding")
        return self._texts

    def label(self, evidence: GroupEvidence) -> GroupLabel:
        """The candidate most probable for the group's exemplar crops."""
        texts = self._text_embeddings()
        crops = evidence.crops
        with torch.no_grad():
            images = torch.cat(
                [
                    _embedded(self.image_embedding(part), len(part), "image_embedding")
                    for part in crops.split(self.batch_size)
                ]
            )
        if images.shape[1] != texts.shape[1]:
            raise ValueError(
                f"image_embedding gives {images.shape[1]}-d and text_embedding "
                f"{texts.shape[1]}-d embeddings; they must share one space"
            )
        similarity = images @ texts.T
        # CLIP's zero-shot rule per crop (softmax over the candidates at the model's
        # temperature), then the mean over crops: each exemplar votes with one distribution,
        # so one odd crop cannot outweigh the others
        probability = (similarity / self.temperature).softmax(1).mean(0)
        best = int(probability.argmax())
        return GroupLabel(
            self.candidates[best],
            float(probability[best]),
            {
                "probability": dict(zip(self.candidates, probability.tolist(), strict=True)),
                "similarity": dict(zip(self.candidates, similarity.mean(0).tolist(), strict=True)),
            },
        )
