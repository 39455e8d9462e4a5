"""NeuHMR's optimisation: anchors, joint feature registration, then the motion field fitted to the video through the
renderer with the photometric, geometric and joint matching constraints (section 3.3)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence

import torch
from jaxtyping import Float
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import Tensor

from nerfstudio_humanfeat.body.smpl import BodyPose, SMPLBody
from nerfstudio_humanfeat.refine.anchors import (
    candidate_count,
    farthest_point_sampling,
    keep_least_loss,
    num_anchor_frames,
    orientation_directions,
)
from nerfstudio_humanfeat.refine.features import sample_features
from nerfstudio_humanfeat.refine.io import MonocularVideo, SmplSequence
from nerfstudio_humanfeat.refine.losses import (
    MATCH_JOINTS,
    iou_loss,
    joint_matching_loss,
    match_joints,
    rgb_loss,
    rotation_regulariser,
)
from nerfstudio_humanfeat.refine.motion_field import MotionField, MotionResidual, apply_residual
from nerfstudio_humanfeat.refine.renderer import PoseRenderer
from nerfstudio_humanfeat.refine.visibility import joint_visibility, register_joint_features


@dataclass
class RefineConfig:
    """NeuHMR's settings; the defaults are the paper's where it gives them (see the notes where it does not)."""

    lambda_rgb: float = 2.5
    lambda_geo: float = 0.001
    lambda_joint: float = 0.003
    """0 turns joint matching off (the ablation)."""
    refine_depth: bool = False
    """Let the residual translation move the body along the camera's viewing axis (the paper's field does). False keeps
    each frame's initial distance from the camera: a monocular video constrains depth only through the silhouette's
    scale, and any width bias of the renderer's silhouette then drives the body along the axis (splatting stand-in,
    75 epochs: depth error 41 -> 173 mm while the error across the image fell 53 -> 50 mm)."""
    lambda_reg: float = 0.01
    """Weight of the penalty on the residual rotations of the head, hands and feet (the paper gives none)."""
    num_rays: int = 512
    """Rays rendered per frame and step."""
    num_candidates: int = 128
    """S, joint candidates per joint."""
    sigma_px: float = 4.0
    """Std of the candidates around each projected joint, pixels of the video."""
    visibility_eps: float = 0.2
    anchors_every: int = 10
    """N = T / anchors_every anchor frames."""
    candidate_factor: float = 2.0
    """N^ = candidate_factor N farthest-point candidates before the loss filter."""
    epochs: Optional[int] = None
    """None: the paper's 5 epochs scaled to the sequence length, ceil(5 reference_frames / T), at least 5."""
    reference_epochs: int = 5
    reference_frames: int = 600
    """Frames of the sequence the paper's 5 epochs are for (ZJU-MoCap sequences are ~600 frames at 1/4 size)."""
    batch_frames: int = 4
    """Frames per optimisation step."""
    lr: float = 1e-4
    lr_final: float = 1e-5
    """AdamW with cosine annealing from lr to lr_final. The paper's 1e-6 -> 1e-7 barely moves a motion field whose
    last layer starts at zero within a few hundred steps; the ratio (10) is the paper's. 1e-3 overfits the stand-in
    renderer's 2D losses on the synthetic data (MPJPE 78 -> 111 mm without joint matching, 5 epochs)."""
    weight_decay: float = 1e-4
    num_rbf: int = 100
    hidden: int = 256
    num_layers: int = 4
    margin_px: float = 8.0
    """Rays are drawn in the 2D box of the initial body (and mask), widened by this margin."""
    report_rays: int = 2048
    """Rays per frame for the per-frame loss report (the same pixels before and after)."""
    seed: int = 0
    progress: bool = True

    def num_epochs(self, num_frames: int) -> int:
        if self.epochs is not None:
            return self.epochs
        return max(self.reference_epochs, math.ceil(self.reference_epochs * self.reference_frames / num_frames))


@dataclass
class FrameLosses:
    rgb: float
    geo: float
    joint: float
    total: float
    joints_matched: int


@dataclass
class RefineResult:
    refined: SmplSequence
    anchors: List[int]
    anchor_candidates: List[int]
    anchor_candidate_losses: List[float]
    registered_joints: List[int]
    initial_losses: List[FrameLosses]
    final_losses: List[FrameLosses]
    history: List[Dict[str, float]] = field(default_factory=list)
    epochs: int = 0
    steps: int = 0

    def report(self) -> Dict:
        """The JSON report: anchors, and the losses of every frame before and after refinement."""
        frames = []
        for row, frame_id in enumerate(self.refined.frame_ids):
            frames.append(
                {
                    "frame": frame_id,
                    "initial": asdict(self.initial_losses[row]),
                    "refined": asdict(self.final_losses[row]),
                }
            )
        mean = lambda rows, key: sum(getattr(r, key) for r in rows) / max(len(rows), 1)
        return {
            "anchors": [self.refined.frame_ids[i] for i in self.anchors],
            "anchor_candidates": [self.refined.frame_ids[i] for i in self.anchor_candidates],
            "anchor_candidate_losses": self.anchor_candidate_losses,
            "registered_joints": self.registered_joints,
            "epochs": self.epochs,
            "steps": self.steps,
            "mean": {
                stage: {key: mean(rows, key) for key in ("rgb", "geo", "joint", "total")}
                for stage, rows in (("initial", self.initial_losses), ("refined", self.final_losses))
            },
            "history": self.history,
            "frames": frames,
        }


def frame_window(video: MonocularVideo, pose: BodyPose, frame: int, margin: float) -> Float[Tensor, "2 2"]:
    """(x0, y0), (x1, y1): the 2D box of the body (and of the frame's mask), widened and clipped to the image."""
    uv, _ = video.project(pose.vertices[0].detach())
    low, high = uv.min(0).values, uv.max(0).values
    if video.masks is not None and bool(video.masks[frame].any()):
        ys, xs = torch.nonzero(video.masks[frame], as_tuple=True)
        low = torch.minimum(low, torch.stack([xs.min(), ys.min()]).to(low))
        high = torch.maximum(high, torch.stack([xs.max() + 1, ys.max() + 1]).to(high))
    size = low.new_tensor([video.width, video.height])
    return torch.stack([(low - margin).clamp_min(0), torch.minimum(high + margin, size)])


def without_view_axis(translation: Float[Tensor, "B 3"], world_to_camera: Float[Tensor, "3 4"]) -> Float[Tensor, "B 3"]:
    """World translations with their component along the camera's optical axis removed."""
    axis = world_to_camera[2, :3].to(translation)
    return translation - (translation @ axis)[:, None] * axis


def sample_pixels(window: Float[Tensor, "2 2"], count: int, generator: torch.Generator) -> Float[Tensor, "N 2"]:
    """Pixel centres drawn uniformly in the window."""
    x0, y0 = [int(v) for v in window[0].floor()]
    x1, y1 = [int(v) for v in window[1].ceil()]
    xs = torch.randint(x0, max(x1, x0 + 1), (count,), generator=generator)
    ys = torch.randint(y0, max(y1, y0 + 1), (count,), generator=generator)
    return torch.stack([xs, ys], -1).float() + 0.5


class NeuHMR:
    """Refines a sequence of SMPL estimates of a monocular video through a ``PoseRenderer``."""

    def __init__(self, body: SMPLBody, renderer: PoseRenderer, config: RefineConfig = RefineConfig()) -> None:
        self.body, self.renderer, self.config = body, renderer, config
        self.video = renderer.video

    # ------------------------------------------------------------------------------------------ posing
    def residual(self, field_: MotionField, index: Tensor, count: int) -> MotionResidual:
        """The motion field at the frames ``index`` of a sequence of ``count`` frames (see ``refine_depth``)."""
        residual = field_(index.float() / max(count - 1, 1))
        if not self.config.refine_depth:
            residual.translation = without_view_axis(residual.translation, self.video.world_to_camera)
        return residual

    def pose(self, sequence: SmplSequence, rows: Sequence[int], field_: Optional[MotionField] = None) -> BodyPose:
        index = torch.as_tensor(list(rows), dtype=torch.long)
        poses, rh, th = sequence.poses[index], sequence.Rh[index], sequence.Th[index]
        if field_ is not None:
            poses, rh, th = apply_residual(poses, rh, th, self.residual(field_, index, len(sequence)))
        return self.body(poses, sequence.shapes[index], rh, th)

    # ------------------------------------------------------------------------------------------ losses of one frame
    def frame_losses(
        self,
        frame: int,
        pose: BodyPose,
        pixels: Float[Tensor, "N 2"],
        registered: Tensor,
        registered_valid: Tensor,
        generator: torch.Generator,
        use_joint: bool = True,
    ) -> Dict[str, Tensor]:
        """rgb, geo and joint losses of one frame (pose: a batch of one), differentiable in the pose."""
        cfg, video = self.config, self.video
        out = self.renderer.render(frame, pose, pixels)
        x = pixels[:, 0].long().clamp(0, video.width - 1)
        y = pixels[:, 1].long().clamp(0, video.height - 1)
        losses = {"rgb": rgb_loss(out.rgb, video.images[frame][y, x].to(out.rgb))}
        if video.masks is not None:
            losses["geo"] = iou_loss(out.accumulation, video.masks[frame][y, x].float())
        else:
            losses["geo"] = out.accumulation.sum() * 0.0
        joints_2d, joint_depth = video.project(pose.joints[0, list(MATCH_JOINTS)])
        if use_joint and bool(registered_valid.any()):
            surface = self.renderer.surface_depth(frame, pose, joints_2d.detach())
            visible = joint_visibility(surface, joint_depth.detach(), cfg.visibility_eps)
            valid = visible & registered_valid[list(MATCH_JOINTS)]
            targets, _ = match_joints(
                self.renderer.feature_map(frame),
                (video.height, video.width),
                joints_2d,
                registered[list(MATCH_JOINTS)],
                cfg.num_candidates,
                cfg.sigma_px,
                generator,
            )
            losses["joint"] = joint_matching_loss(joints_2d, targets, valid)
            losses["joints_matched"] = valid.sum()
        else:
            losses["joint"] = joints_2d.sum() * 0.0
            losses["joints_matched"] = torch.zeros((), dtype=torch.long)
        return losses

    def weighted(self, losses: Dict[str, Tensor]) -> Tensor:
        cfg = self.config
        return cfg.lambda_rgb * losses["rgb"] + cfg.lambda_geo * losses["geo"] + cfg.lambda_joint * losses["joint"]

    # ------------------------------------------------------------------------------------------ the steps
    def choose_anchors(self, initial: SmplSequence) -> tuple[List[int], List[int], List[float]]:
        """FPS of the initial orientations (camera space), then the N candidates whose initial poses render (each
        conditioned on its own frame) with the least rgb + geo loss."""
        cfg, count = self.config, len(initial)
        directions = orientation_directions(initial.Rh, self.video.world_to_camera)
        num = num_anchor_frames(count, cfg.anchors_every)
        candidates = farthest_point_sampling(directions, candidate_count(num, count, cfg.candidate_factor), start=0)
        losses = []
        with torch.no_grad():
            for frame in candidates:
                pose = self.pose(initial, [frame])
                self.renderer.condition([frame], pose)
                pixels = self.report_pixels(frame, pose)
                out = self.frame_losses(frame, pose, pixels, torch.zeros(24, 1), torch.zeros(24, dtype=torch.bool),
                                        torch.Generator().manual_seed(cfg.seed), use_joint=False)  # fmt: skip
                losses.append(float(cfg.lambda_rgb * out["rgb"] + cfg.lambda_geo * out["geo"]))
        return keep_least_loss(candidates, losses, num), candidates, losses

    def register(self, initial: SmplSequence, anchors: Sequence[int]) -> tuple[Tensor, Tensor]:
        """Joint features F at the anchors' initial joints, averaged over the anchors where the joint is visible."""
        feats, visible = [], []
        with torch.no_grad():
            for frame in anchors:
                pose = self.pose(initial, [frame])
                uv, depth = self.video.project(pose.joints[0])
                surface = self.renderer.surface_depth(frame, pose, uv)
                visible.append(joint_visibility(surface, depth, self.config.visibility_eps))
                feats.append(
                    sample_features(self.renderer.feature_map(frame), uv, (self.video.height, self.video.width))
                )
        return register_joint_features(torch.stack(feats), torch.stack(visible))

    def report_pixels(self, frame: int, pose: BodyPose) -> Tensor:
        generator = torch.Generator().manual_seed(self.config.seed * 100003 + frame)
        return sample_pixels(
            frame_window(self.video, pose, frame, self.config.margin_px), self.config.report_rays, generator
        )

    def evaluate(
        self, sequence: SmplSequence, field_: Optional[MotionField], windows: List[Tensor], registered, valid
    ) -> List[FrameLosses]:
        rows = []
        with torch.no_grad():
            for frame in range(len(sequence)):
                pose = self.pose(sequence, [frame], field_)
                generator = torch.Generator().manual_seed(self.config.seed * 100003 + frame)
                pixels = sample_pixels(windows[frame], self.config.report_rays, generator)
                out = self.frame_losses(frame, pose, pixels, registered, valid, generator)
                rows.append(FrameLosses(float(out["rgb"]), float(out["geo"]), float(out["joint"]),
                                        float(self.weighted(out)), int(out["joints_matched"])))  # fmt: skip
        return rows

    def refine(self, initial: SmplSequence) -> RefineResult:
        cfg = self.config
        torch.manual_seed(cfg.seed)
        count = len(initial)
        if count != len(self.video):
            raise ValueError(f"{count} SMPL frames for a video of {len(self.video)} frames")
        anchors, candidates, candidate_losses = self.choose_anchors(initial)
        with torch.no_grad():
            anchor_poses = self.pose(initial, anchors)
        self.renderer.condition(anchors, anchor_poses)
        registered, valid = self.register(initial, anchors)
        with torch.no_grad():
            windows = [frame_window(self.video, self.pose(initial, [f]), f, cfg.margin_px) for f in range(count)]
        initial_losses = self.evaluate(initial, None, windows, registered, valid)

        field_ = MotionField(cfg.num_rbf, cfg.hidden, cfg.num_layers)
        epochs = cfg.num_epochs(count)
        steps_per_epoch = math.ceil(count / cfg.batch_frames)
        total_steps = epochs * steps_per_epoch
        optimizer = torch.optim.AdamW(field_.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(total_steps, 1), eta_min=cfg.lr_final
        )
        generator = torch.Generator().manual_seed(cfg.seed + 1)
        history: List[Dict[str, float]] = []
        use_joint = cfg.lambda_joint > 0
        progress = Progress(
            TextColumn("[bold]NeuHMR[/bold] {task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[losses]}"), TimeElapsedColumn(), TimeRemainingColumn(), disable=not cfg.progress,
        )  # fmt: skip
        with progress:
            task = progress.add_task("refining", total=total_steps, losses="")
            for epoch in range(epochs):
                order = torch.randperm(count, generator=generator).tolist()
                sums = {"rgb": 0.0, "geo": 0.0, "joint": 0.0, "total": 0.0}
                for start in range(0, count, cfg.batch_frames):
                    rows = order[start : start + cfg.batch_frames]
                    index = torch.as_tensor(rows, dtype=torch.long)
                    residual = self.residual(field_, index, count)
                    poses, rh, th = apply_residual(initial.poses[index], initial.Rh[index], initial.Th[index], residual)
                    bodies = self.body(poses, initial.shapes[index], rh, th)
                    total = cfg.lambda_reg * rotation_regulariser(residual.joint_rotations)
                    for b, frame in enumerate(rows):
                        pixels = sample_pixels(windows[frame], cfg.num_rays, generator)
                        out = self.frame_losses(frame, bodies[b], pixels, registered, valid, generator, use_joint)
                        loss = self.weighted(out) / len(rows)
                        total = total + loss
                        for key in ("rgb", "geo", "joint"):
                            sums[key] += float(out[key].detach()) / count
                        sums["total"] += float(loss.detach()) * len(rows) / count
                    optimizer.zero_grad(set_to_none=True)
                    total.backward()
                    optimizer.step()
                    scheduler.step()
                    seen = min(start + cfg.batch_frames, count) / count
                    shown = " ".join(f"{k} {sums[k] / seen:.4f}" for k in ("rgb", "geo", "joint"))
                    progress.update(task, advance=1, description=f"epoch {epoch + 1}/{epochs}", losses=shown)
                history.append({"epoch": epoch + 1, **sums, "lr": scheduler.get_last_lr()[0]})

        final_losses = self.evaluate(initial, field_, windows, registered, valid)
        with torch.no_grad():
            residual = self.residual(field_, torch.arange(count), count)
            poses, rh, th = apply_residual(initial.poses, initial.Rh, initial.Th, residual)
        refined = SmplSequence(
            poses.detach(), initial.shapes.clone(), rh.detach(), th.detach(), list(initial.frame_ids)
        )
        return RefineResult(
            refined=refined,
            anchors=anchors,
            anchor_candidates=candidates,
            anchor_candidate_losses=candidate_losses,
            registered_joints=[int(j) for j in torch.nonzero(valid).reshape(-1)],
            initial_losses=initial_losses,
            final_losses=final_losses,
            history=history,
            epochs=epochs,
            steps=total_steps,
        )
