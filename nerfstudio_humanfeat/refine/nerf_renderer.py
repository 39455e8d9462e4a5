"""A trained animatable model of this plugin (``supports_novel_pose``, e.g. AniPixel) as NeuHMR's renderer.

Deviation from the paper: its GHN is conditioned on n = 2 anchor frames at once; the models of this plugin condition
a render on the source views of one frame, so each render is conditioned on the one anchor whose (initial) global
orientation is closest to the frame's, seen through the video's camera. The anchors' observation poses are their
initial estimates: the catalog's fits of the video's frames are replaced by the initial sequence. Features F come
from ``model.image_features(images)`` when the model has it, else from the training-free local descriptors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
from jaxtyping import Float
from nerfstudio.cameras.rays import RayBundle
from torch import Tensor

from nerfstudio_humanfeat.body.smpl import BodyPose
from nerfstudio_humanfeat.data.world import translate_smpl_params, translate_world_to_camera
from nerfstudio_humanfeat.model_components.views import TargetView, camera_rays
from nerfstudio_humanfeat.refine.anchors import nearest_anchors, orientation_directions
from nerfstudio_humanfeat.refine.features import local_descriptors
from nerfstudio_humanfeat.refine.io import MonocularVideo, SmplSequence
from nerfstudio_humanfeat.refine.renderer import Rendered


def load_model(config_path: Path, data_root: Optional[Path] = None):
    """The model of an ``ns-train`` run (nerfstudio's eval_setup), its dataset optionally replaced by ``data_root``
    (a dataset that holds the video's sequence, e.g. with a splits.json naming it a test subject)."""
    from nerfstudio.utils.eval_utils import eval_setup

    def update(config):
        if data_root is not None:
            config.pipeline.datamanager.data = Path(data_root)
            if hasattr(config.pipeline.datamanager, "dataparser"):
                config.pipeline.datamanager.dataparser.data = Path(data_root)
        return config

    _, pipeline, _, _ = eval_setup(Path(config_path), test_mode="test", update_config_callback=update)
    return pipeline.model


class NerfPoseRenderer:
    """Renders through ``model.render_rays`` with ``TargetView.target_pose`` set to the pose being optimised."""

    def __init__(
        self, model, video: MonocularVideo, subject: str, camera: int, initial: SmplSequence, bbox_padding: float = 0.1
    ) -> None:
        if not getattr(model, "supports_novel_pose", False):
            raise ValueError(f"{type(model).__name__} is not animatable (supports_novel_pose is False): NeuHMR needs "
                             "a pose-driven model such as anipixel")  # fmt: skip
        self.model, self.video, self.camera, self.padding = model, video, camera, bbox_padding
        catalog = model.catalog
        names = [s.name for s in catalog.subjects]
        if subject not in names:
            raise ValueError(f"subject {subject!r} is not in the model's dataset ({names}); pass its data root")
        subject_index = names.index(subject)
        record = catalog.subjects[subject_index]
        key_of_id = {frame.frame_id: catalog.frame_key(subject_index, i) for i, frame in enumerate(record.frames)}
        missing = [f for f in video.frame_ids if f not in key_of_id]
        if missing:
            raise ValueError(f"frames {missing[:10]} of the video are not in the model's dataset for {subject}")
        self.frame_keys: List[int] = [key_of_id[f] for f in video.frame_ids]
        # NeuHMR works in the dataset's world (the video's camera, the poses); the catalog's is moved by its offset.
        self.offset = catalog.world_offset.clone()
        for row, key in enumerate(self.frame_keys):  # the anchors are seen in their initial poses
            params = {k: v[row].clone() for k, v in initial.as_dict().items()}
            catalog.frame(key).smpl_params = translate_smpl_params(params, self.offset)
        catalog.bodies.clear()
        self.world_to_camera = translate_world_to_camera(video.world_to_camera, self.offset)
        self.directions = orientation_directions(initial.Rh, video.world_to_camera)
        self.anchors: List[int] = []
        self._features: Dict[int, Tensor] = {}
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        model.eval()

    @property
    def device(self):
        return self.model.device

    def condition(self, anchors: Sequence[int], poses: BodyPose) -> None:
        self.anchors = list(anchors)

    def _target(self, frame: int, pose: BodyPose) -> TargetView:
        pose = pose.translated(self.offset.to(pose.vertices.device))
        vertices = pose.vertices[0].detach()
        bbox = torch.stack([vertices.min(0).values - self.padding, vertices.max(0).values + self.padding])
        source = nearest_anchors(self.directions, self.anchors, frame, 1)[0] if self.anchors else frame
        return TargetView(
            frame_key=self.frame_keys[frame],
            intrinsics=self.video.intrinsics.to(self.device),
            world_to_camera=self.world_to_camera.to(self.device),
            height=self.video.height,
            width=self.video.width,
            bbox=bbox.to(self.device),
            source_frame_key=self.frame_keys[source],
            target_pose=pose,
        )

    def _rays(self, pixels: Float[Tensor, "N 2"]) -> RayBundle:
        return camera_rays(self.video.intrinsics.to(self.device), self.world_to_camera.to(self.device), pixels)

    def _render(self, frame: int, pose: BodyPose, pixels: Tensor) -> Dict[str, Tensor]:
        target = self._target(frame, pose)
        sources = self.model.load_sources(target, [self.camera])
        target, offset, conditioning = self.model.conditioned(target, sources)
        pixels = pixels.to(self.device)
        return self.model.render_rays(self._rays(pixels), pixels - offset, target, sources, conditioning)

    def render(self, frame: int, pose: BodyPose, pixels: Float[Tensor, "N 2"]) -> Rendered:
        out = self._render(frame, pose, pixels)
        return Rendered(out["rgb"].cpu(), out["accumulation"].reshape(-1).cpu())

    def surface_depth(self, frame: int, pose: BodyPose, pixels: Float[Tensor, "N 2"]) -> Float[Tensor, " N"]:
        with torch.no_grad():
            out = self._render(frame, pose, pixels)
            rays = self._rays(pixels.to(self.device))
            forward = self.world_to_camera[2, :3].to(self.device)
            z = out["depth"].reshape(-1) * (rays.directions @ forward)
            hit = out["accumulation"].reshape(-1) > 0.5
            return torch.where(hit, z, torch.full_like(z, float("inf"))).cpu()

    def feature_map(self, frame: int) -> Float[Tensor, "C h w"]:
        if frame not in self._features:
            image = self.video.images[frame]
            if hasattr(self.model, "image_features"):
                with torch.no_grad():
                    self._features[frame] = self.model.image_features(image.permute(2, 0, 1)[None].to(self.device))[
                        0
                    ].cpu()
            else:
                self._features[frame] = local_descriptors(image)
        return self._features[frame]
