"""What the cameras see behind the body: nothing (black) or a capture studio (dome).

The studio is a tiled floor at z = 0 (where the feet touch) inside a textured sphere around the world
origin. Its colours are functions of the world point a ray hits, so every camera sees the same scene.
"""

from __future__ import annotations

import colorsys
import math
from typing import Literal, Tuple, get_args

import torch
from jaxtyping import Float
from torch import Tensor

from nerfstudio_humanfeat.synth.appearance import hash_noise, value_noise

BackgroundName = Literal["black", "dome"]
BACKGROUNDS: Tuple[str, ...] = get_args(BackgroundName)

DOME_RADIUS = 5.0
"""Metres around the world origin: the subjects stand near it and the cameras ring it at about 3 m."""
TILE_SIZE = 0.5
"""Floor tile side, metres."""
NUM_PANELS = 12
"""Coloured panels around the dome."""
STRIPE_PERIOD = 0.6
"""Height between the dome's horizontal stripes, metres."""

FLOOR_TONES = ((0.66, 0.63, 0.57), (0.42, 0.44, 0.48))
PANEL_COLOURS = tuple(colorsys.hsv_to_rgb((5 * k / NUM_PANELS) % 1.0, 0.45, 0.75) for k in range(NUM_PANELS))
"""One hue per panel, neighbours far apart on the colour wheel, so that no two views look alike."""
STRIPE_COLOUR = (0.92, 0.90, 0.82)


def _cells(ij: Tensor, salt: int) -> Tensor:
    """Integer lattice cells for hash_noise from 2D indices, one independent stream per salt."""
    return torch.cat([ij, torch.full_like(ij[..., :1], salt)], dim=-1)


def floor_colour(points: Float[Tensor, "N 3"]) -> Float[Tensor, "N 3"]:
    """Checkered tiles with a per-tile tint, dark grout lines and faint large stains, on the plane z = 0."""
    uv = points[:, :2] / TILE_SIZE
    cell = torch.floor(uv).long()
    tones = torch.tensor(FLOOR_TONES, dtype=torch.float64)
    colour = tones[cell.sum(-1) % 2]
    tint = torch.stack([hash_noise(_cells(cell, salt)) for salt in range(3)], dim=-1)
    colour = colour * (0.85 + 0.3 * hash_noise(_cells(cell, 3)))[:, None] * (0.92 + 0.16 * tint)
    offset = uv - cell
    grout = torch.minimum(offset, 1 - offset).amin(-1) < 0.025
    colour = torch.where(grout[:, None], colour * 0.45, colour)
    return colour * (0.85 + 0.15 * value_noise(points, 1.2).double())[:, None]


def dome_colour(points: Float[Tensor, "N 3"]) -> Float[Tensor, "N 3"]:
    """Coloured vertical panels with seams, a height gradient and light horizontal stripes, on the dome."""
    azimuth = torch.atan2(points[:, 1], points[:, 0])
    slot = (azimuth + math.pi) / (2 * math.pi) * NUM_PANELS
    panel = torch.floor(slot).long() % NUM_PANELS
    palette = torch.tensor(PANEL_COLOURS, dtype=torch.float64)
    colour = palette[panel]
    colour = colour * (0.9 + 0.2 * hash_noise(_cells(torch.stack([panel, torch.zeros_like(panel)], -1), 4)))[:, None]
    height = points[:, 2]
    elevation = torch.asin((height / DOME_RADIUS).clamp(-1, 1))
    colour = colour * (1.1 - 0.5 * elevation / (math.pi / 2)).clamp(min=0.5)[:, None]
    stripe = torch.remainder(height, STRIPE_PERIOD) < 0.2 * STRIPE_PERIOD
    colour = torch.where(stripe[:, None], 0.4 * colour + 0.6 * torch.tensor(STRIPE_COLOUR, dtype=torch.float64), colour)
    offset = slot - torch.floor(slot)
    seam = torch.minimum(offset, 1 - offset) < 0.02
    colour = torch.where(seam[:, None], colour * 0.35, colour)
    return colour * (0.9 + 0.2 * value_noise(points, 3.0).double())[:, None]


def studio(origin: Float[Tensor, "3"], directions: Float[Tensor, "N 3"]) -> Float[Tensor, "N 3"]:
    """Colour in [0, 1] that rays from `origin` (inside the dome, above the floor) see: floor or dome, float32."""
    origin, directions = origin.double(), directions.double()
    # Leaving a sphere from inside: the larger root of |o + t d|^2 = R^2 (unit d).
    b = directions @ origin
    t_dome = -b + torch.sqrt(b * b - (origin @ origin - DOME_RADIUS**2))
    down = directions[:, 2] < -1e-9
    t_floor = torch.where(down, -origin[2] / torch.where(down, directions[:, 2], -1.0), torch.inf)
    on_floor = t_floor < t_dome
    points = origin + torch.minimum(t_floor, t_dome)[:, None] * directions
    colour = torch.empty_like(points)
    colour[on_floor] = floor_colour(points[on_floor])
    colour[~on_floor] = dome_colour(points[~on_floor])
    return colour.clamp(0, 1).float()
