"""Initial estimates made from ground truth the way a human-mesh-recovery (HMR) method errs.

The error model, all seeded, per joint j and frame t (axis-angle, composed on the right of the true local rotation):

    e_jt = b_j + s_t (c_jt + n_jt)

- b_j ~ N(0, (k_j bias_deg)^2): a constant bias per joint (HMR methods err consistently on one person's build and
  clothing);
- c_jt: smooth error, white noise low-pass filtered over ``smooth_frames`` (Gaussian), rescaled to std k_j smooth_deg
  (errors persist over neighbouring frames, as per-frame regressors show);
- n_jt ~ N(0, (k_j jitter_deg)^2): per-frame jitter;
- s_t = exp(N(0, difficulty^2)): a per-frame difficulty, so that some frames are estimated well and others badly;
- k_j: 0.5 for the spine and neck, 1 for hips, knees, collars, shoulders and head, 1.5 for elbows, ankles and
  wrists, 0.5 for the feet's and hands' end joints (distal limbs err most in HMR).

The global orientation gets a constant offset plus smooth error (``global_deg``) composed on the right of R(Rh); the
translation a constant offset in camera space, mostly along the viewing axis (monocular depth is the least
constrained: ``depth_m``; sideways ``lateral_m``), plus per-frame jitter ``translation_jitter_m``. Shapes are kept.
With the defaults the initial MPJPE on the synthetic sequences is about 70-100 mm (the paper's HMR inputs: 77-78 mm).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from nerfstudio_humanfeat.refine.io import SmplSequence
from nerfstudio_humanfeat.refine.motion_field import NUM_BODY_JOINTS, MotionResidual, apply_residual
from nerfstudio_humanfeat.skeleton import SMPL_JOINT_NAMES

JOINT_SCALE = {
    "spine1": 0.5, "spine2": 0.5, "spine3": 0.5, "neck": 0.5, "left_foot": 0.5, "right_foot": 0.5,
    "left_hand": 0.5, "right_hand": 0.5, "left_elbow": 1.5, "right_elbow": 1.5, "left_wrist": 1.5,
    "right_wrist": 1.5, "left_ankle": 1.5, "right_ankle": 1.5,
}  # fmt: skip
"""k_j; joints not listed: 1."""


@dataclass(frozen=True)
class PerturbConfig:
    """The HMR-like error model (see the module docstring)."""

    seed: int = 0
    bias_deg: float = 4.5
    smooth_deg: float = 4.5
    jitter_deg: float = 2.25
    smooth_frames: float = 4.0
    difficulty: float = 0.4
    global_deg: float = 3.0
    depth_m: float = 0.045
    lateral_m: float = 0.015
    translation_jitter_m: float = 0.0075
    scale: float = 1.0
    """Multiplies every angle and distance above."""


def _smooth_noise(rng: np.random.Generator, count: int, dims: int, frames: float) -> np.ndarray:
    """(count, dims) white noise low-pass filtered over time, rescaled to unit std."""
    noise = rng.normal(size=(count, dims))
    if frames > 0 and count > 1:
        radius = int(math.ceil(3 * frames))
        kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / frames) ** 2)
        padded = np.pad(noise, ((radius, radius), (0, 0)), mode="reflect" if count > radius else "edge")
        noise = np.stack([np.convolve(padded[:, d], kernel / kernel.sum(), mode="valid") for d in range(dims)], -1)
    return noise / max(float(noise.std()), 1e-8)


def perturb_sequence(
    truth: SmplSequence, config: PerturbConfig = PerturbConfig(), world_to_camera: Optional[Float[Tensor, "3 4"]] = None
) -> SmplSequence:
    """Noisy initial estimates of a ground-truth sequence (translation offsets in the camera's axes when given)."""
    rng = np.random.default_rng(config.seed)
    count = len(truth)
    s = config.scale
    deg = math.pi / 180.0
    k = np.array([JOINT_SCALE.get(name, 1.0) for name in SMPL_JOINT_NAMES[1:]])[None, :, None]
    difficulty = np.exp(rng.normal(0.0, config.difficulty, size=(count, 1, 1)))
    bias = rng.normal(0.0, 1.0, size=(1, NUM_BODY_JOINTS, 3)) * config.bias_deg
    smooth = _smooth_noise(rng, count, NUM_BODY_JOINTS * 3, config.smooth_frames).reshape(count, -1, 3)
    jitter = rng.normal(0.0, 1.0, size=(count, NUM_BODY_JOINTS, 3))
    joints = k * (bias + difficulty * (smooth * config.smooth_deg + jitter * config.jitter_deg)) * deg * s
    glob = (rng.normal(0.0, 1.0, size=(1, 3)) + _smooth_noise(rng, count, 3, config.smooth_frames)) / math.sqrt(2)
    glob = glob * config.global_deg * deg * s
    offset_cam = np.array([config.lateral_m, config.lateral_m, config.depth_m]) * rng.normal(0.0, 1.0, size=3)
    trans_cam = (offset_cam[None] + rng.normal(0.0, config.translation_jitter_m, size=(count, 3))) * s
    if world_to_camera is not None:
        trans = trans_cam @ world_to_camera[:, :3].double().numpy()  # camera axes -> world: R^T v
    else:
        trans = trans_cam
    as_t = lambda a: torch.from_numpy(np.asarray(a, dtype=np.float32))
    residual = MotionResidual(as_t(joints), as_t(glob), as_t(trans))
    poses, rh, th = apply_residual(truth.poses, truth.Rh, truth.Th, residual)
    return SmplSequence(poses.detach(), truth.shapes.clone(), rh.detach(), th.detach(), list(truth.frame_ids))
