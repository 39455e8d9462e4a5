"""Canonical box normalisation (AniPixel 3.2): each subject's canonical body box mapped onto a shared [-1, 1]^3."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor


@dataclass
class CanonicalBox:
    """An axis-aligned box around a canonical body (vertex box plus padding)."""

    lower: Float[Tensor, "3"]
    upper: Float[Tensor, "3"]

    @classmethod
    def from_vertices(cls, vertices: Float[Tensor, "*b V 3"], padding: float = 0.05) -> "CanonicalBox":
        """The minimum box of the vertices, padded by `padding` metres on each side."""
        flat = vertices.reshape(-1, 3)
        return cls(flat.min(0).values - padding, flat.max(0).values + padding)

    @property
    def size(self) -> Float[Tensor, "3"]:
        return self.upper - self.lower

    def normalize(self, points: Float[Tensor, "*b 3"]) -> Float[Tensor, "*b 3"]:
        """Canonical points to [-1, 1]^3 (the box's corners to -1 and 1, per axis)."""
        return (points - self.lower.to(points)) / self.size.to(points) * 2.0 - 1.0

    def denormalize(self, points: Float[Tensor, "*b 3"]) -> Float[Tensor, "*b 3"]:
        """Inverse of `normalize`."""
        return (points + 1.0) * 0.5 * self.size.to(points) + self.lower.to(points)

    def to_box(self, points: Float[Tensor, "*b 3"], other: "CanonicalBox") -> Float[Tensor, "*b 3"]:
        """Points of this subject's canonical space resized into `other`'s (e.g. the neutral-sized body's)."""
        return other.denormalize(self.normalize(points))


def neutral_box(boxes: list[CanonicalBox]) -> CanonicalBox:
    """The mean box of several subjects: a neutral-sized canonical body."""
    return CanonicalBox(torch.stack([b.lower for b in boxes]).mean(0), torch.stack([b.upper for b in boxes]).mean(0))
