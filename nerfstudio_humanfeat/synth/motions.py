"""Parametric motions: SMPL body poses plus the ZJU global rotation (Rh) and translation (Th) over time.

Joint rotations are axis-angle in SMPL's local frames (canonical space: x to the body's left, y up,
z to the front). `Rh` maps that y-up canonical space to the z-up world and turns the body to its
heading; `Th` places it on the floor plane (its height is fixed later from the posed mesh).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List

import cv2
import numpy as np
from jaxtyping import Float

from nerfstudio_humanfeat.skeleton import SMPL_JOINT_NAMES

Array = np.ndarray

Y_UP_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
"""Rotation by +90 degrees about x: SMPL's up (+y) becomes the world's up (+z), its front (+z) becomes -y."""


@dataclass(frozen=True)
class MotionParams:
    """Per-subject randomness of a motion."""

    phase: float
    """Start of the cycle, radians."""
    heading: float
    """Initial facing direction about the world z axis, radians (0: facing -y)."""
    speed: float
    """Multiplier of the motion's tempo."""
    amplitude: float
    """Multiplier of the motion's joint angles."""
    offset: Float[Array, "2"]
    """Floor position of the body, metres."""


@dataclass
class MotionFrames:
    """A motion sampled at F times, in the ZJU parameterisation."""

    poses: Float[Array, "F 72"]
    """SMPL axis-angle pose, the first 3 (global orientation) zero."""
    rh: Float[Array, "F 3"]
    th: Float[Array, "F 3"]


def joint(name: str) -> int:
    return SMPL_JOINT_NAMES.index(name)


def euler(x: Array | float = 0.0, y: Array | float = 0.0, z: Array | float = 0.0) -> Float[Array, "*bs 3 3"]:
    """Rotation matrices R = Ry Rz Rx: a bend about x, then about z, then a twist about y."""
    x, y, z = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float), np.asarray(z, float))
    cx, sx, cy, sy, cz, sz = np.cos(x), np.sin(x), np.cos(y), np.sin(y), np.cos(z), np.sin(z)
    one, zero = np.ones_like(x), np.zeros_like(x)
    rx = np.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], -1).reshape(*x.shape, 3, 3)
    ry = np.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).reshape(*x.shape, 3, 3)
    rz = np.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], -1).reshape(*x.shape, 3, 3)
    return ry @ rz @ rx


def matrix_to_axis_angle(rot: Float[Array, "*bs 3 3"]) -> Float[Array, "*bs 3"]:
    """Axis-angle vectors of rotation matrices."""
    flat = rot.reshape(-1, 3, 3)
    out = np.stack([cv2.Rodrigues(np.ascontiguousarray(r, dtype=np.float64))[0][:, 0] for r in flat])
    return out.reshape(*rot.shape[:-2], 3)


def global_rotation(heading: Float[Array, " F"]) -> Float[Array, "F 3"]:
    """Rh: SMPL's y-up canonical space to the z-up world, then a turn by `heading` about world z."""
    c, s = np.cos(heading), np.sin(heading)
    zero, one = np.zeros_like(heading), np.ones_like(heading)
    rz = np.stack([c, -s, zero, s, c, zero, zero, zero, one], -1).reshape(-1, 3, 3)
    return matrix_to_axis_angle(rz @ Y_UP_TO_Z_UP)


def heading_towards(direction: Float[Array, "*bs 2"]) -> Float[Array, "*bs"]:
    """The heading that makes the body face a world xy direction."""
    return np.arctan2(direction[..., 0], -direction[..., 1])


class PoseBuilder:
    """Accumulates per-joint local rotations for F frames."""

    def __init__(self, num_frames: int) -> None:
        self.rot = np.tile(np.eye(3), (num_frames, 24, 1, 1))

    def set(self, name: str, x=0.0, y=0.0, z=0.0) -> "PoseBuilder":
        self.rot[:, joint(name)] = euler(x, y, z) * np.ones((len(self.rot), 1, 1))
        return self

    def both(self, side_name: str, x=0.0, y=0.0, z=0.0) -> "PoseBuilder":
        """Sets left_<name> and its mirror image right_<name> (y and z rotations change sign)."""
        self.set(f"left_{side_name}", x, y, z)
        return self.set(f"right_{side_name}", x, -np.asarray(y), -np.asarray(z))

    def poses(self) -> Float[Array, "F 72"]:
        aa = matrix_to_axis_angle(self.rot)
        aa[:, 0] = 0.0
        return aa.reshape(len(self.rot), 72)


ARMS_DOWN = 1.2
"""Shoulder rotation that lowers the arms from the T-pose to the sides, radians."""


def walk(t: Float[Array, " F"], p: MotionParams) -> MotionFrames:
    """Walking along a small circle around the origin."""
    phi = 2 * np.pi * t * p.speed / 1.1 + p.phase
    a = p.amplitude
    s = np.sin(phi)
    b = PoseBuilder(len(t))
    b.set("left_hip", x=-0.45 * a * s).set("right_hip", x=0.45 * a * s)
    b.set("left_knee", x=0.15 + 0.55 * a * np.clip(np.sin(phi + 0.9), 0, None))
    b.set("right_knee", x=0.15 + 0.55 * a * np.clip(np.sin(phi + 0.9 + np.pi), 0, None))
    b.set("left_ankle", x=0.15 * a * np.cos(phi)).set("right_ankle", x=-0.15 * a * np.cos(phi))
    b.set("left_shoulder", x=0.35 * a * s, z=-ARMS_DOWN).set("right_shoulder", x=-0.35 * a * s, z=ARMS_DOWN)
    b.set("left_elbow", y=-0.25).set("right_elbow", y=0.25)
    b.set("spine1", y=0.08 * a * s).set("spine3", y=-0.08 * a * s, x=0.04)
    b.set("neck", y=0.04 * a * s)
    radius = 0.3
    angle = p.heading + 0.35 * t * p.speed
    centre = p.offset - radius * np.array([np.cos(p.heading), np.sin(p.heading)])
    xy = centre + radius * np.stack([np.cos(angle), np.sin(angle)], -1)
    tangent = np.stack([-np.sin(angle), np.cos(angle)], -1)
    return _frames(b, heading_towards(tangent), xy)


def wave(t: Float[Array, " F"], p: MotionParams) -> MotionFrames:
    """Standing, waving the right hand above the shoulder."""
    phi = 2 * np.pi * t * p.speed / 0.9 + p.phase
    a = p.amplitude
    b = PoseBuilder(len(t))
    b.set("left_shoulder", z=-ARMS_DOWN, x=0.05).set("left_elbow", y=-0.2)
    b.set("right_shoulder", z=-0.5, y=0.3)
    b.set("right_elbow", z=-1.3 + 0.45 * a * np.sin(phi))
    b.set("right_wrist", z=0.2 * a * np.sin(phi + 0.5))
    b.set("spine3", z=0.05 * np.sin(phi), y=0.1)
    b.set("head", z=0.1 * np.sin(0.5 * phi), x=0.05)
    b.both("hip", z=0.04)
    heading = p.heading + 0.1 * np.sin(0.3 * phi)
    return _frames(b, heading, np.tile(p.offset, (len(t), 1)))


def squat(t: Float[Array, " F"], p: MotionParams) -> MotionFrames:
    """Squatting down and up with the arms raised forward for balance."""
    phi = 2 * np.pi * t * p.speed / 2.4 + p.phase
    d = 0.5 * (1 - np.cos(phi)) * min(p.amplitude, 1.0)
    b = PoseBuilder(len(t))
    b.both("hip", x=-1.4 * d, z=0.12)
    b.both("knee", x=2.0 * d)
    b.both("ankle", x=-0.6 * d)
    b.set("spine1", x=0.25 * d).set("spine2", x=0.15 * d).set("neck", x=-0.3 * d)
    b.set("left_shoulder", y=-1.4 * d, z=-ARMS_DOWN * (1 - d))
    b.set("right_shoulder", y=1.4 * d, z=ARMS_DOWN * (1 - d))
    b.set("left_elbow", y=-0.3 * d).set("right_elbow", y=0.3 * d)
    return _frames(b, np.full(len(t), p.heading), np.tile(p.offset, (len(t), 1)))


def turn(t: Float[Array, " F"], p: MotionParams) -> MotionFrames:
    """Turning on the spot with small steps, arms slightly away from the body."""
    phi = 2 * np.pi * t * p.speed / 0.8 + p.phase
    step = 0.25 * p.amplitude * np.clip(np.sin(phi), 0, None)
    other = 0.25 * p.amplitude * np.clip(-np.sin(phi), 0, None)
    b = PoseBuilder(len(t))
    b.set("left_hip", x=-step).set("left_knee", x=2 * step)
    b.set("right_hip", x=-other).set("right_knee", x=2 * other)
    b.set("left_shoulder", z=-0.8).set("right_shoulder", z=0.8)
    b.set("left_elbow", y=-0.5).set("right_elbow", y=0.5)
    b.set("head", y=0.25)
    heading = p.heading + 1.2 * t * p.speed
    return _frames(b, heading, np.tile(p.offset, (len(t), 1)))


def jumping_jack(t: Float[Array, " F"], p: MotionParams) -> MotionFrames:
    """Jumping jacks: arms swing from the sides to above the head while the legs spread."""
    phi = 2 * np.pi * t * p.speed / 1.2 + p.phase
    d = 0.5 * (1 - np.cos(phi)) * min(p.amplitude, 1.0)
    b = PoseBuilder(len(t))
    b.set("left_shoulder", z=-ARMS_DOWN + 2.5 * d).set("right_shoulder", z=ARMS_DOWN - 2.5 * d)
    b.both("elbow", y=-0.15)
    b.set("left_hip", z=0.3 * d).set("right_hip", z=-0.3 * d)
    b.set("left_ankle", z=-0.2 * d).set("right_ankle", z=0.2 * d)
    b.both("knee", x=0.1 + 0.1 * d)
    return _frames(b, np.full(len(t), p.heading), np.tile(p.offset, (len(t), 1)))


def _frames(builder: PoseBuilder, heading: Float[Array, " F"], xy: Float[Array, "F 2"]) -> MotionFrames:
    th = np.concatenate([xy, np.zeros((len(xy), 1))], axis=1)
    return MotionFrames(poses=builder.poses(), rh=global_rotation(np.asarray(heading, float)), th=th)


MOTIONS: Dict[str, Callable[[Float[Array, " F"], MotionParams], MotionFrames]] = {
    "walk": walk,
    "wave": wave,
    "squat": squat,
    "turn": turn,
    "jumping_jack": jumping_jack,
}
MOTION_NAMES: List[str] = list(MOTIONS)


def sample_motion_params(rng: np.random.Generator) -> MotionParams:
    """Random phase, heading, tempo, amplitude and floor offset."""
    return MotionParams(
        phase=float(rng.uniform(0, 2 * np.pi)),
        heading=float(rng.uniform(-np.pi, np.pi)),
        speed=float(rng.uniform(0.85, 1.15)),
        amplitude=float(rng.uniform(0.8, 1.1)),
        offset=rng.uniform(-0.1, 0.1, size=2),
    )


def motion(name: str, times: Float[Array, " F"], params: MotionParams) -> MotionFrames:
    """A named motion sampled at `times` (seconds)."""
    if name not in MOTIONS:
        raise ValueError(f"unknown motion {name!r}; choose from {MOTION_NAMES}")
    return MOTIONS[name](np.asarray(times, dtype=float), params)
