"""Writes a multi-subject synthetic human dataset in the ZJU-MoCap (Neural Body) layout, or in the Human3.6M
(Animatable NeRF) or RenderPeople (SHERF) layouts.

See docs/data_format.md: per subject `annots.npy`, images, masks, SMPL parameters and vertices,
keypoints, joints and dense pose; at the root `splits.json` and the generated SMPL body model. The other
layouts' writers live in `synth/layouts/`; every layout renders the same subjects (bodies, motions, cameras).
"""

from __future__ import annotations

import json
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Dict, Iterator, List, Literal, Optional, Protocol, Tuple

import cv2
import numpy as np
import smplx
import torch
from jaxtyping import Bool, Float, Int, Shaped
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import Tensor

from nerfstudio_humanfeat.skeleton import BODY25_NAMES
from nerfstudio_humanfeat.synth.appearance import CanonicalLandmarks, Outfit, albedo, lambertian, sample_outfit
from nerfstudio_humanfeat.synth.background import BACKGROUNDS, BackgroundName, studio
from nerfstudio_humanfeat.synth.body_model import NUM_BETAS, BodyModel, build_body_model, load_smpl, pose_body
from nerfstudio_humanfeat.synth.motions import MOTION_NAMES, MotionParams, motion, sample_motion_params
from nerfstudio_humanfeat.synth.raycast import (
    centre_samples,
    downsample,
    interpolate_hits,
    pixel_rays,
    raycast,
    supersampled_intrinsics,
    world_to_camera,
)

PresetName = Literal["tiny", "demo", "bench"]
TestMotions = Literal["any", "seen"]
LayoutName = Literal["zju", "h36m", "renderpeople"]
LAYOUTS: Tuple[str, ...] = ("zju", "h36m", "renderpeople")
LAYOUT_CAMERAS: Dict[str, int] = {"h36m": 4, "renderpeople": 36}
"""Cameras per subject of a layout when not given (Human3.6M: 4, RenderPeople: 36 views); ZJU: the preset's."""
RENDERPEOPLE_BENCH_RESOLUTION = 512
"""RenderPeople's images are 512 x 512: the bench preset writes that size, the smaller presets their own."""
H36M_SUBJECT_NAMES: Tuple[str, ...] = ("S1", "S5", "S6", "S7", "S8", "S9", "S11")
BODY_MODEL_PATH = Path("body_model") / "SMPL_NEUTRAL.pkl"
JPEG_QUALITY = 95

VISIBILITY_TOLERANCE: Dict[str, float] = {
    "Nose": 0.03, "Neck": 0.09, "RShoulder": 0.11, "RElbow": 0.07, "RWrist": 0.06, "LShoulder": 0.11,
    "LElbow": 0.07, "LWrist": 0.06, "MidHip": 0.15, "RHip": 0.13, "RKnee": 0.08, "RAnkle": 0.07,
    "LHip": 0.13, "LKnee": 0.08, "LAnkle": 0.07, "REye": 0.03, "LEye": 0.03, "REar": 0.03, "LEar": 0.03,
    "LBigToe": 0.03, "LSmallToe": 0.03, "LHeel": 0.03, "RBigToe": 0.03, "RSmallToe": 0.03, "RHeel": 0.03,
}  # fmt: skip
"""How far (metres) the visible surface may lie in front of a keypoint before it counts as occluded:
about the body's half-thickness there (joints are inside the body, face and foot points on it)."""


@dataclass(frozen=True)
class SynthSpec:
    """What to generate."""

    num_subjects: int
    num_test_subjects: int
    num_frames: int
    num_cameras: int
    resolution: int
    seed: int = 0
    supersample: int = 3
    """Samples per pixel side for the image (odd: the middle sample gives masks and dense pose)."""
    frame_interval: float = 0.2
    """Seconds of motion between consecutive frames."""
    background: BackgroundName = "black"
    """Behind the body: black, or dome (a tiled floor and a textured dome around the subject)."""
    layout: LayoutName = "zju"
    """On-disk layout: zju (Neural Body), h36m (Animatable NeRF's Human3.6M), renderpeople (SHERF)."""
    test_motions: TestMotions = "any"
    """Motions of the held-out subjects: 'any' (subject i does motion i mod 5, so a held-out subject may do one no
    training subject does) or 'seen' (a held-out subject whose motion no training subject does takes a training
    subject's instead: unseen people in a seen kind of motion, with their own timing and amplitudes)."""

    def __post_init__(self) -> None:
        if self.num_subjects < 1 or self.num_frames < 1 or self.num_cameras < 1 or self.resolution < 16:
            raise ValueError(f"invalid dataset size: {self}")
        if not 0 <= self.num_test_subjects <= self.num_subjects:
            raise ValueError(f"num_test_subjects must be in [0, {self.num_subjects}], got {self.num_test_subjects}")
        if self.supersample < 1 or self.supersample % 2 == 0:
            raise ValueError(f"supersample must be a positive odd number, got {self.supersample}")
        if self.background not in BACKGROUNDS:
            raise ValueError(f"background must be one of {BACKGROUNDS}, got {self.background!r}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")

    @property
    def num_views(self) -> int:
        return self.num_subjects * self.num_frames * self.num_cameras


PRESETS: Dict[str, SynthSpec] = {
    "tiny": SynthSpec(num_subjects=3, num_test_subjects=1, num_frames=2, num_cameras=8, resolution=96),
    "demo": SynthSpec(num_subjects=6, num_test_subjects=2, num_frames=4, num_cameras=12, resolution=128),
    "bench": SynthSpec(
        num_subjects=8, num_test_subjects=2, num_frames=10, num_cameras=16, resolution=256, background="dome"
    ),
}


def make_spec(
    preset: PresetName = "tiny",
    seed: int = 0,
    num_subjects: Optional[int] = None,
    num_test_subjects: Optional[int] = None,
    num_frames: Optional[int] = None,
    num_cameras: Optional[int] = None,
    resolution: Optional[int] = None,
    supersample: int = 3,
    background: Optional[BackgroundName] = None,
    layout: LayoutName = "zju",
    test_motions: Optional[TestMotions] = None,
) -> SynthSpec:
    """A preset with overrides; without an explicit test count, a third of the subjects (at least one) is held out.

    The layout sets the default camera count (h36m: 4, renderpeople: 36) and, for renderpeople's bench preset,
    the resolution (512 px, the real data's)."""
    base = PRESETS[preset]
    if num_cameras is None:
        num_cameras = LAYOUT_CAMERAS.get(layout)
    if resolution is None and layout == "renderpeople" and preset == "bench":
        resolution = RENDERPEOPLE_BENCH_RESOLUTION
    subjects = num_subjects or base.num_subjects
    if num_test_subjects is None:
        num_test_subjects = base.num_test_subjects if num_subjects is None else max(1, subjects // 3)
        num_test_subjects = min(num_test_subjects, subjects - 1) if subjects > 1 else 0
    return replace(
        base,
        seed=seed,
        num_subjects=subjects,
        num_test_subjects=num_test_subjects,
        num_frames=num_frames or base.num_frames,
        num_cameras=num_cameras or base.num_cameras,
        resolution=resolution or base.resolution,
        supersample=supersample,
        background=background or base.background,
        layout=layout,
        test_motions=test_motions or base.test_motions,
    )


@dataclass
class CameraSet:
    """Fixed OpenCV cameras of one sequence."""

    intrinsics: Float[np.ndarray, "C 3 3"]
    distortion: Float[np.ndarray, "C 5"]
    """k1, k2, p1, p2, k3."""
    rotation: Float[np.ndarray, "C 3 3"]
    translation: Float[np.ndarray, "C 3"]
    """World to camera, metres."""
    height: int
    width: int

    def __len__(self) -> int:
        return len(self.intrinsics)

    @property
    def names(self) -> List[str]:
        return [f"Camera_B{c + 1}" for c in range(len(self))]


def look_at(eye: Float[np.ndarray, "3"], target: Float[np.ndarray, "3"], roll: float = 0.0) -> Float[np.ndarray, "3 3"]:
    """OpenCV world-to-camera rotation of a camera at `eye` looking at `target`, world z up."""
    forward = target - eye
    forward = forward / np.linalg.norm(forward)
    right = np.cross(forward, np.array([0.0, 0.0, 1.0]))
    right = right / np.linalg.norm(right)
    down = np.cross(forward, right)
    rot = np.stack([right, down, forward])
    c, s = np.cos(roll), np.sin(roll)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ rot


def camera_ring(rng: np.random.Generator, num: int, resolution: int) -> CameraSet:
    """A ZJU-like ring of cameras around the origin with jittered placement, intrinsics and distortion."""
    ks, ds, rs, ts = [], [], [], []
    fill = rng.uniform(0.65, 0.75)
    for c in range(num):
        azimuth = 2 * np.pi * c / num + np.deg2rad(rng.uniform(-4, 4))
        radius = rng.uniform(2.85, 3.15)
        eye = np.array([radius * np.cos(azimuth), radius * np.sin(azimuth), rng.uniform(1.4, 1.7)])
        target = np.array([*rng.uniform(-0.05, 0.05, size=2), rng.uniform(0.85, 0.95)])
        rot = look_at(eye, target, roll=np.deg2rad(rng.uniform(-1.5, 1.5)))
        focal = fill * resolution * np.linalg.norm(target - eye) / 1.75
        k = np.array(
            [
                [focal * rng.uniform(0.997, 1.003), 0.0, (resolution - 1) / 2 + rng.uniform(-0.01, 0.01) * resolution],
                [0.0, focal, (resolution - 1) / 2 + rng.uniform(-0.01, 0.01) * resolution],
                [0.0, 0.0, 1.0],
            ]
        )
        d = np.array([rng.uniform(-0.05, 0.05), rng.uniform(-0.02, 0.02), *rng.uniform(-5e-4, 5e-4, size=2), 0.0])
        ks.append(k)
        ds.append(d)
        rs.append(rot)
        ts.append(-rot @ eye)
    return CameraSet(np.stack(ks), np.stack(ds), np.stack(rs), np.stack(ts), resolution, resolution)


@dataclass
class DistortionMap:
    """Where each pixel of the distorted image samples a pinhole render with a margin of `margin` px."""

    map_x: Float[np.ndarray, "H W"]
    map_y: Float[np.ndarray, "H W"]
    margin: int

    @classmethod
    def build(
        cls, intrinsics: Float[np.ndarray, "3 3"], distortion: Float[np.ndarray, " 5"], height: int, width: int
    ) -> "DistortionMap":
        """Inverts the lens model at every output pixel (cv2.undistortPointsIter) and pads for what falls outside."""
        grid = np.stack(np.meshgrid(np.arange(width), np.arange(height)), -1).reshape(-1, 1, 2).astype(np.float64)
        criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12)
        ideal = cv2.undistortPointsIter(grid, intrinsics, distortion, None, intrinsics, criteria).reshape(
            height, width, 2
        )
        overshoot = max(0.0, -ideal.min(), ideal[..., 0].max() - (width - 1), ideal[..., 1].max() - (height - 1))
        margin = int(np.ceil(overshoot)) + 2
        return cls((ideal[..., 0] + margin).astype(np.float32), (ideal[..., 1] + margin).astype(np.float32), margin)

    def distort(self, image: Shaped[np.ndarray, "h w *C"], nearest: bool) -> Shaped[np.ndarray, "H W *C"]:
        """The distorted image from a pinhole render with the margin."""
        interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
        return cv2.remap(image, self.map_x, self.map_y, interp, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


@dataclass
class SubjectPlan:
    """Everything random about one subject, drawn from its own seed."""

    name: str
    split: Literal["train", "test"]
    betas: Float[np.ndarray, "10"]
    motion: str
    motion_params: MotionParams
    outfit: Outfit
    cameras: CameraSet
    light: Float[np.ndarray, "3"]
    """Unit world direction towards the light."""


def subject_motion(spec: SynthSpec, index: int) -> str:
    """The motion of subject ``index``: motion (index + seed) mod 5, unless ``test_motions='seen'`` moves a held-out
    subject onto a training subject's motion."""
    name = MOTION_NAMES[(index + spec.seed) % len(MOTION_NAMES)]
    num_train = spec.num_subjects - spec.num_test_subjects
    if spec.test_motions == "any" or index < num_train or num_train == 0:
        return name
    seen = sorted({MOTION_NAMES[(i + spec.seed) % len(MOTION_NAMES)] for i in range(num_train)})
    return name if name in seen else seen[index % len(seen)]


def plan_subject(spec: SynthSpec, index: int) -> SubjectPlan:
    """Shape, motion, clothing, cameras and light of subject `index`; independent of the other subjects."""
    rng = np.random.default_rng(np.random.SeedSequence([spec.seed, index]))
    betas = np.clip(rng.normal(0.0, 0.9, size=NUM_BETAS), -2.0, 2.0)
    motion_name = subject_motion(spec, index)
    params = sample_motion_params(rng)
    outfit = sample_outfit(rng)
    cameras = camera_ring(rng, spec.num_cameras, spec.resolution)
    azimuth, elevation = rng.uniform(-np.pi, np.pi), rng.uniform(0.6, 1.1)
    light = np.array([np.cos(azimuth) * np.cos(elevation), np.sin(azimuth) * np.cos(elevation), np.sin(elevation)])
    if spec.layout == "renderpeople":  # RenderPeople's cameras.json has no distortion (K, R, T only)
        cameras.distortion[:] = 0.0
    split = "test" if index >= spec.num_subjects - spec.num_test_subjects else "train"
    return SubjectPlan(subject_name(spec.layout, index), split, betas, motion_name, params, outfit, cameras, light)


def subject_name(layout: LayoutName, index: int) -> str:
    """Folder name of subject `index`: synth_000, ... (zju, renderpeople) or S1, S5, S6, S7, S8, S9, S11, S12, ..."""
    if layout == "h36m":
        return H36M_SUBJECT_NAMES[index] if index < len(H36M_SUBJECT_NAMES) else f"S{index + 5}"
    return f"synth_{index:03d}"


@dataclass
class SubjectMotion:
    """A subject's SMPL parameters and world-space geometry per frame."""

    poses: Float[np.ndarray, "F 72"]
    rh: Float[np.ndarray, "F 3"]
    th: Float[np.ndarray, "F 3"]
    shapes: Float[np.ndarray, "F 10"]
    vertices: Float[np.ndarray, "F V 3"]
    joints: Float[np.ndarray, "F 24 3"]


def animate(plan: SubjectPlan, spec: SynthSpec, smpl: smplx.SMPL, surface: Bool[np.ndarray, " V"]) -> SubjectMotion:
    """Poses the body through smplx (ZJU convention) and sets Th's height so the feet touch z = 0."""
    times = np.arange(spec.num_frames) * spec.frame_interval
    frames = motion(plan.motion, times, plan.motion_params)
    shapes = np.tile(plan.betas, (spec.num_frames, 1))
    as_t = lambda a: torch.from_numpy(np.asarray(a, dtype=np.float32))
    verts, joints = pose_body(smpl, as_t(frames.poses), as_t(shapes), as_t(frames.rh), as_t(frames.th))
    verts, joints = verts.double().numpy(), joints.double().numpy()
    lift = -verts[:, surface, 2].min(axis=1)
    th = frames.th.copy()
    th[:, 2] += lift
    verts[..., 2] += lift[:, None]
    joints[..., 2] += lift[:, None]
    return SubjectMotion(frames.poses, frames.rh, th, shapes, verts, joints)


def vertex_normals(vertices: Float[Tensor, "V 3"], faces: Int[Tensor, "F 3"]) -> Float[Tensor, "V 3"]:
    """Area-weighted vertex normals."""
    tri = vertices[faces]
    face_n = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1).double()
    normals = np.zeros((len(vertices), 3))
    np.add.at(normals, faces.numpy().reshape(-1), face_n.repeat_interleave(3, dim=0).numpy())
    return torch.nn.functional.normalize(torch.from_numpy(normals).float(), dim=-1)


@dataclass
class ViewRender:
    """One camera's outputs, in the distorted image geometry unless noted."""

    image: Int[np.ndarray, "H W 3"]
    """RGB, uint8."""
    mask: Bool[np.ndarray, "H W"]
    embedding: Float[np.ndarray, "H W 3"]
    depth: Float[np.ndarray, "h w"]
    """Pinhole render with the distortion map's margin: camera z of the surface, inf off the body."""


class Renderer:
    """Renders a subject's posed mesh into its cameras."""

    def __init__(
        self, body: BodyModel, plan: SubjectPlan, supersample: int, background: BackgroundName = "black"
    ) -> None:
        self.faces = torch.from_numpy(body.faces).long()
        self.face_parts = torch.from_numpy(body.face_parts).long()
        self.canonical = torch.from_numpy(body.v_template).float()
        lo, hi = body.canonical_bbox()
        self.bbox_min, self.bbox_max = lo.astype(np.float32), hi.astype(np.float32)
        self.marks = CanonicalLandmarks.from_body(body)
        self.plan = plan
        self.factor = supersample
        self.background = background
        cams = plan.cameras
        self.maps = [
            DistortionMap.build(cams.intrinsics[c], cams.distortion[c], cams.height, cams.width)
            for c in range(len(cams))
        ]
        self._backdrops: Dict[int, Float[Tensor, "H W 3"]] = {}

    def padded_intrinsics(self, camera: int) -> Float[np.ndarray, "3 3"]:
        """K of the pinhole render, which has the distortion map's margin on every side."""
        k = self.plan.cameras.intrinsics[camera].copy()
        k[:2, 2] += self.maps[camera].margin
        return k

    def backdrop(self, camera: int) -> Float[Tensor, "H W 3"]:
        """The supersampled pinhole render of the background alone, a new tensor."""
        cams, s = self.plan.cameras, self.factor
        margin = self.maps[camera].margin
        height, width = s * (cams.height + 2 * margin), s * (cams.width + 2 * margin)
        if self.background == "black":
            return torch.zeros(height, width, 3)
        # Cached per camera: the cameras do not move, and the studio costs more than the body.
        if camera not in self._backdrops:
            k = supersampled_intrinsics(torch.from_numpy(self.padded_intrinsics(camera)), s)
            rot, trans = torch.from_numpy(cams.rotation[camera]), torch.from_numpy(cams.translation[camera])
            origin, directions = pixel_rays(k, rot, trans, height, width)
            self._backdrops[camera] = studio(origin, directions.reshape(-1, 3)).reshape(height, width, 3)
        return self._backdrops[camera].clone()

    def render(self, vertices: Float[Tensor, "V 3"], normals: Float[Tensor, "V 3"], camera: int) -> ViewRender:
        """Image, mask and dense pose of world-space vertices (with their normals) seen by one camera."""
        cams, dmap, s = self.plan.cameras, self.maps[camera], self.factor
        rot = torch.from_numpy(cams.rotation[camera]).float()
        trans = torch.from_numpy(cams.translation[camera]).float()
        height, width = cams.height + 2 * dmap.margin, cams.width + 2 * dmap.margin
        k = torch.from_numpy(self.padded_intrinsics(camera)).float()
        hits = raycast(
            world_to_camera(vertices, rot, trans), self.faces, supersampled_intrinsics(k, s), s * height, s * width,
            cull_backfaces=True,
        )  # fmt: skip
        sel = hits.mask
        canonical_hits = interpolate_hits(hits, self.canonical, self.faces)
        canonical = torch.zeros(s * height, s * width, 3)
        canonical[sel] = canonical_hits
        shaded = self.backdrop(camera)
        if bool(sel.any()):
            normal = interpolate_hits(hits, normals @ rot.T, self.faces)
            colour = albedo(canonical_hits, self.face_parts[hits.triangle[sel]], self.plan.outfit, self.marks)
            light = rot @ torch.from_numpy(self.plan.light).float()
            shaded[sel] = lambertian(colour, normal, light)
        image = downsample(shaded, s).numpy()
        image = dmap.distort((image * 255.0 + 0.5).clip(0, 255).astype(np.uint8), nearest=False)
        mask = dmap.distort(centre_samples(hits.mask, s).numpy().astype(np.uint8), nearest=True).astype(bool)
        scale = self.bbox_max - self.bbox_min
        embedding = ((centre_samples(canonical, s).numpy() - self.bbox_min) / scale).clip(0, 1).astype(np.float32)
        embedding = dmap.distort(embedding, nearest=True) * mask[..., None]
        depth = centre_samples(hits.depth, s).numpy()
        depth = np.where(depth > 0, depth, np.inf)
        return ViewRender(image, mask, embedding, depth)


def project(
    points: Float[np.ndarray, "N 3"], cameras: CameraSet, camera: int
) -> Tuple[Float[np.ndarray, "N 2"], Float[np.ndarray, " N"]]:
    """Distorted pixel coordinates (cv2.projectPoints) and camera depth of world points."""
    rvec = cv2.Rodrigues(cameras.rotation[camera])[0]
    tvec = cameras.translation[camera].reshape(3, 1)
    uv, _ = cv2.projectPoints(
        points.astype(np.float64), rvec, tvec, cameras.intrinsics[camera], cameras.distortion[camera]
    )
    depth = points @ cameras.rotation[camera][2] + cameras.translation[camera][2]
    return uv.reshape(-1, 2), depth


def keypoint_confidence(
    points: Float[np.ndarray, "25 3"],
    normals: Float[np.ndarray, "25 3"],
    renderer: Renderer,
    view: ViewRender,
    camera: int,
) -> Tuple[Float[np.ndarray, "25 2"], Float[np.ndarray, "25"]]:
    """Distorted 2D keypoints with confidence 1 (visible), 0.5 (occluded by the body) or 0 (outside the image).

    A keypoint is occluded when the rendered surface at its pixel lies in front of it by more than the
    body's thickness there, or, for points on the surface (with a normal), when its surface faces away.
    """
    cams = renderer.plan.cameras
    uv, depth = project(points, cams, camera)
    inside = (depth > 0) & (uv[:, 0] >= -0.5) & (uv[:, 0] < cams.width - 0.5)
    inside &= (uv[:, 1] >= -0.5) & (uv[:, 1] < cams.height - 0.5)
    k = renderer.padded_intrinsics(camera)
    cam_points = points @ cams.rotation[camera].T + cams.translation[camera]
    pix = cam_points @ k.T
    pix = np.round(pix[:, :2] / np.maximum(pix[:, 2:3], 1e-6)).astype(np.int64)
    h, w = view.depth.shape
    surface = view.depth[pix[:, 1].clip(0, h - 1), pix[:, 0].clip(0, w - 1)]
    footprint = 1.5 * depth / k[0, 0]
    tolerance = np.array([VISIBILITY_TOLERANCE[name] for name in BODY25_NAMES]) + footprint
    centre = -cams.rotation[camera].T @ cams.translation[camera]
    back_facing = ((centre - points) * normals).sum(-1) < 0
    occluded = (surface < depth - tolerance) | back_facing
    conf = np.where(inside, np.where(occluded, 0.5, 1.0), 0.0)
    return np.where(inside[:, None], uv, 0.0), conf


def openpose_json(keypoints: Float[np.ndarray, "25 3"]) -> dict:
    """OpenPose's per-image JSON with one person."""
    return {
        "version": 1.3,
        "people": [
            {
                "person_id": [-1],
                "pose_keypoints_2d": [round(float(v), 4) for v in keypoints.reshape(-1)],
                "face_keypoints_2d": [],
                "hand_left_keypoints_2d": [],
                "hand_right_keypoints_2d": [],
                "pose_keypoints_3d": [],
                "face_keypoints_3d": [],
                "hand_left_keypoints_3d": [],
                "hand_right_keypoints_3d": [],
            }
        ],
    }


@dataclass
class SubjectWriter:
    """Writes one sequence's files."""

    root: Path
    cameras: CameraSet
    ims: List[dict] = field(default_factory=list)

    def frame_files(self, frame: int, state: SubjectMotion, keypoints3d: Float[np.ndarray, "25 3"]) -> None:
        """params/, vertices/, joints3d/ and keypoints3d/ of one frame."""
        params = {
            "poses": state.poses[frame][None].astype(np.float32),
            "Rh": state.rh[frame][None].astype(np.float32),
            "Th": state.th[frame][None].astype(np.float32),
            "shapes": state.shapes[frame][None].astype(np.float32),
        }
        save_npy(self.root / "params" / f"{frame}.npy", params)
        save_npy(self.root / "vertices" / f"{frame}.npy", state.vertices[frame].astype(np.float32))
        save_npy(self.root / "joints3d" / f"{frame}.npy", state.joints[frame].astype(np.float32))
        kp = np.concatenate([keypoints3d, np.ones((25, 1))], axis=1)
        entry = [{"id": 0, "keypoints3d": [[round(float(v), 6) for v in row] for row in kp]}]
        write_json(self.root / "keypoints3d" / f"{frame:06d}.json", entry)

    def view_files(
        self, frame: int, camera: int, view: ViewRender, keypoints2d: Float[np.ndarray, "25 3"], renderer: Renderer
    ) -> str:
        """Image, masks, OpenPose JSON and dense pose of one view; returns the image path relative to the sequence."""
        name = self.cameras.names[camera]
        rel = f"{name}/{frame:06d}"
        make_parent(self.root / f"{rel}.jpg")
        cv2.imwrite(str(self.root / f"{rel}.jpg"), view.image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        mask = view.mask.astype(np.uint8)
        write_png(self.root / "mask" / f"{rel}.png", mask * 255)
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
        write_png(self.root / "mask_cihp" / f"{rel}.png", cv2.erode(mask, kernel))
        write_json(self.root / "keypoints2d" / f"{rel}.json", openpose_json(keypoints2d))
        make_parent(self.root / "densepose" / f"{rel}.npz")
        np.savez_compressed(
            self.root / "densepose" / f"{rel}.npz",
            embedding=view.embedding.astype(np.float16),
            mask=view.mask.astype(np.uint8),
            bbox_min=renderer.bbox_min,
            bbox_max=renderer.bbox_max,
        )
        return f"{rel}.jpg"

    def annots(self) -> None:
        """annots.npy with the cameras (T in millimetres) and the per-frame image lists and 2D keypoints."""
        cams = self.cameras
        annots = {
            "cams": {
                "K": [k.copy() for k in cams.intrinsics],
                "D": [d.reshape(5, 1).copy() for d in cams.distortion],
                "R": [r.copy() for r in cams.rotation],
                "T": [(t * 1000.0).reshape(3, 1) for t in cams.translation],
            },
            "ims": self.ims,
        }
        save_npy(self.root / "annots.npy", annots)

    def end_frame(self, frame: int, paths: List[str], keypoints2d: Float[np.ndarray, "C 25 3"]) -> None:
        """Lists the frame's images and 2D keypoints in annots['ims']."""
        self.ims.append({"ims": paths, "kpts2d": keypoints2d})

    def close(self) -> None:
        self.annots()


class SubjectSink(Protocol):
    """Receives one subject's frames and views as they are rendered, in the layout it writes."""

    def frame_files(self, frame: int, state: SubjectMotion, keypoints3d: Float[np.ndarray, "25 3"]) -> None: ...

    def view_files(
        self, frame: int, camera: int, view: ViewRender, keypoints2d: Float[np.ndarray, "25 3"], renderer: Renderer
    ) -> str: ...

    def end_frame(self, frame: int, paths: List[str], keypoints2d: Float[np.ndarray, "C 25 3"]) -> None: ...

    def close(self) -> None: ...


class DatasetWriter(Protocol):
    """Writes a dataset in one layout: one sink per subject, then the root's files."""

    def subject(self, plan: SubjectPlan, state: SubjectMotion) -> SubjectSink: ...

    def finish(self, plans: List[SubjectPlan]) -> None: ...


@dataclass
class ZJUWriter:
    """The ZJU-MoCap layout: one folder per subject, splits.json at the root."""

    root: Path
    spec: SynthSpec

    def subject(self, plan: SubjectPlan, state: SubjectMotion) -> SubjectSink:
        return SubjectWriter(self.root / plan.name, plan.cameras)

    def finish(self, plans: List[SubjectPlan]) -> None:
        write_splits(self.root, plans, self.spec)


def dataset_writer(spec: SynthSpec, root: Path, body: BodyModel, smpl: smplx.SMPL) -> DatasetWriter:
    """The writer of the spec's layout."""
    if spec.layout == "h36m":
        from nerfstudio_humanfeat.synth.layouts.h36m import H36MWriter

        return H36MWriter(root, spec, body, smpl)
    if spec.layout == "renderpeople":
        from nerfstudio_humanfeat.synth.layouts.renderpeople import RenderPeopleWriter

        return RenderPeopleWriter(root, spec, body, smpl)
    return ZJUWriter(root, spec)


def make_parent(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)


def save_npy(path: Path, value) -> None:
    make_parent(path)
    np.save(path, value, allow_pickle=True)


def write_json(path: Path, value) -> None:
    make_parent(path)
    path.write_text(json.dumps(value))


def write_png(path: Path, image: np.ndarray) -> None:
    make_parent(path)
    cv2.imwrite(str(path), image)


@dataclass
class SynthSummary:
    """What was written."""

    root: Path
    spec: SynthSpec
    subjects: List[Tuple[str, str, str]]
    """(name, split, motion) per subject."""
    seconds: float
    num_vertices: int
    num_faces: int

    @property
    def num_views(self) -> int:
        return self.spec.num_views


def _prepare_output(root: Path, overwrite: bool, clear: bool = True) -> None:
    """Refuses a non-empty `root` unless `overwrite`; with `clear`, removes a previous synthetic dataset's entries."""
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"{root} exists and is not a directory")
    if root.exists() and any(root.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{root} is not empty; pass --overwrite to replace a previous synthetic dataset")
        if not clear:
            return
        for entry in root.iterdir():
            ours = entry.name in ("splits.json", "body_model", "human_list.txt") or (
                entry.name.startswith("synth_")
                and ((entry / "annots.npy").exists() or (entry / "cameras.json").exists())
            )
            ours |= entry.name[:1] == "S" and entry.name[1:].isdigit() and (entry / "Posing" / "annots.npy").exists()
            if ours:
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    root.mkdir(parents=True, exist_ok=True)


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold blue]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("views"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
    )


@contextmanager
def single_threaded_torch() -> Iterator[None]:
    """Runs torch on one thread: the small ops here gain little from more and stall badly on a busy machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def generate(spec: SynthSpec, output_dir: Path, overwrite: bool = False, progress: bool = True) -> SynthSummary:
    """Writes the dataset described by `spec` into `output_dir`.

    The dataset is written next to `output_dir` (a hidden ``.<name>.partial`` folder) and moved in when complete, so
    an interrupted generation leaves `output_dir` as it was: never a half-written dataset that would read as whole.
    """
    root = Path(output_dir)
    _prepare_output(root, overwrite, clear=False)
    staging = root.parent / f".{root.name}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    with single_threaded_torch():
        summary = _generate(spec, staging, overwrite=False, progress=progress)
    _prepare_output(root, overwrite)
    for entry in staging.iterdir():
        entry.rename(root / entry.name)
    staging.rmdir()
    return replace(summary, root=root)


def _generate(spec: SynthSpec, root: Path, overwrite: bool, progress: bool) -> SynthSummary:
    start = time.perf_counter()
    _prepare_output(root, overwrite)
    body = build_body_model()
    smpl = load_smpl(body.save(root / BODY_MODEL_PATH))
    faces = torch.from_numpy(body.faces).long()
    surface = body.surface_vertex_mask()
    body25 = body.body25_vertex_ids()
    body25_surface = body.body25_surface_ids()
    plans = [plan_subject(spec, i) for i in range(spec.num_subjects)]
    writer = dataset_writer(spec, root, body, smpl)
    with _progress(progress) as bar:
        task = bar.add_task("rendering", total=spec.num_views)
        for plan in plans:
            state = animate(plan, spec, smpl, surface)
            renderer = Renderer(body, plan, spec.supersample, spec.background)
            sink = writer.subject(plan, state)
            for frame in range(spec.num_frames):
                keypoints3d = state.vertices[frame, body25]
                sink.frame_files(frame, state, keypoints3d)
                verts = torch.from_numpy(state.vertices[frame]).float()
                normals = vertex_normals(verts, faces)
                keypoint_normals = np.where(
                    body25_surface[:, None] >= 0, normals[body25_surface.clip(min=0)].numpy(), 0.0
                )
                paths, kpts = [], []
                for camera in range(spec.num_cameras):
                    view = renderer.render(verts, normals, camera)
                    uv, conf = keypoint_confidence(keypoints3d, keypoint_normals, renderer, view, camera)
                    keypoints2d = np.concatenate([uv, conf[:, None]], axis=1)
                    paths.append(sink.view_files(frame, camera, view, keypoints2d, renderer))
                    kpts.append(keypoints2d)
                    bar.advance(task)
                sink.end_frame(frame, paths, np.stack(kpts))
            sink.close()
    writer.finish(plans)
    subjects = [(p.name, p.split, p.motion) for p in plans]
    return SynthSummary(root, spec, subjects, time.perf_counter() - start, body.num_vertices, len(body.faces))


def write_splits(
    root: Path,
    plans: List[SubjectPlan],
    spec: SynthSpec,
    source_cameras: Optional[List[int]] = None,
    target_cameras: Optional[List[int]] = None,
) -> None:
    """splits.json: the plans' train and test subjects, source and target cameras (default: even and odd), every
    frame."""
    splits = {
        "train_subjects": [p.name for p in plans if p.split == "train"],
        "test_subjects": [p.name for p in plans if p.split == "test"],
        "source_cameras": source_cameras if source_cameras is not None else list(range(0, spec.num_cameras, 2)),
        "target_cameras": target_cameras if target_cameras is not None else list(range(1, spec.num_cameras, 2)),
        "frames": {"start": 0, "end": None, "stride": 1},
        # The masks are exact: a dilated one would keep a ring of background around the person in every image.
        "mask_dilation": 0,
    }
    (root / "splits.json").write_text(json.dumps(splits, indent=2) + "\n")
