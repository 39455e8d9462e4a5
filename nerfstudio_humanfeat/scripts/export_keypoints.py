"""ns-humanfeat-keypoints: export a trained model's 2D and 3D keypoints and skeleton overlays.

    ns-humanfeat-keypoints --load-config outputs/demo/ghnerf/run/config.yml --output-dir keypoints
    ns-humanfeat-keypoints --load-config ... --output-dir kp --subjects synth_004 --frames 0 1 --cameras 1 3

Per subject, under ``--output-dir``/<subject>/:
  keypoints2d/<camera>/<frame>_keypoints.json   OpenPose JSON of the rendered view (missing joints: 0, 0, 0)
  overlays/<camera>/<frame>.png                 the rendered colour with the BODY_25 skeleton
  videos/<camera>.mp4                           the overlays over frames (with two or more frames)
  keypoints3d/<frame>.json, <frame>.npz         world 3D keypoints: [{"id": 0, "keypoints3d": 25 x [x, y, z, c]}]
                                                (the dataset's format and world: the dataparser's centring undone),
                                                and keypoints3d (J, 4) with joint_names
2D keypoints are in pixels of the rendered (undistorted, output-resolution) image with OpenPose's convention of
pixel centres at integers; <frame> is the dataset's frame number, 6 digits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional

import mediapy
import numpy as np
import torch
import tyro
from jaxtyping import Float
from nerfstudio.utils.eval_utils import eval_setup
from nerfstudio.utils.rich_utils import CONSOLE
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import Tensor

from nerfstudio_humanfeat.data.catalog import SubjectRecord
from nerfstudio_humanfeat.data.dataparsers.zju_mocap_dataparser import cameras_of_views
from nerfstudio_humanfeat.data.world import translate_keypoints
from nerfstudio_humanfeat.keypoints import PIXEL_CENTER, keypoint_valid
from nerfstudio_humanfeat.models.human_model import HumanFeatureModel
from nerfstudio_humanfeat.skeleton import BODY25_NAMES
from nerfstudio_humanfeat.synth.generator import openpose_json


def openpose_keypoints(keypoints: Float[Tensor, "J 3"], pixel_center: float = PIXEL_CENTER) -> np.ndarray:
    """(J, 3) keypoints in OpenPose's convention: pixel centres at integers, missing joints (0, 0, 0)."""
    out = keypoints.detach().cpu().double().clone()
    out[:, :2] -= pixel_center
    out[~keypoint_valid(keypoints.cpu())] = 0.0
    return out.numpy()


def keypoints3d_entry(keypoints: Float[Tensor, "J 4"]) -> list:
    """The dataset's keypoints3d JSON (one person); missing joints (0, 0, 0, 0)."""
    values = torch.where(keypoint_valid(keypoints)[:, None], keypoints, torch.zeros_like(keypoints))
    return [{"id": 0, "keypoints3d": [[round(float(v), 6) for v in row] for row in values]}]


def write_keypoints_3d(stem: Path, keypoints: Float[Tensor, "J 4"], joint_names: List[str]) -> None:
    """<stem>.json (dataset format) and <stem>.npz (keypoints3d (J, 4) with nan for missing, joint_names)."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(keypoints3d_entry(keypoints)))
    np.savez(stem.with_suffix(".npz"), keypoints3d=keypoints.numpy(), joint_names=np.array(joint_names))


@dataclass
class ExportKeypoints:
    """Export 2D keypoints (OpenPose JSON), 3D keypoints (JSON, npz) and skeleton overlays of a trained model."""

    load_config: Path
    """config.yml of a trained run (as for ns-eval)."""
    output_dir: Path = Path("keypoints")
    subjects: Optional[List[str]] = None
    """Subjects to export; default: the held-out (test) subjects."""
    frames: Optional[List[int]] = None
    """Frame indices within each subject's selected frames; default: all."""
    cameras: Optional[List[int]] = None
    """Camera indices of the rig; default: each subject's target cameras."""
    keypoints_3d: bool = True
    """Also extract 3D keypoints (once per frame, as the model's ``keypoints_3d_method`` says)."""
    video: bool = True
    """Also write an mp4 of the overlays per camera when two or more frames are exported."""
    fps: float = 10.0

    def main(self) -> None:
        _, pipeline, _, _ = eval_setup(self.load_config, test_mode="test")
        model: HumanFeatureModel = pipeline.model
        model.eval()
        subjects = self.chosen_subjects(model)
        total = sum(len(self.frame_indices(s)) * (len(self.camera_indices(s)) + self.keypoints_3d) for s in subjects)
        columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), TimeElapsedColumn())
        with Progress(*columns, MofNCompleteColumn()) as progress:
            task = progress.add_task("[green]Exporting keypoints...", total=total)
            for subject in subjects:
                self.export_subject(model, subject, lambda: progress.advance(task))
        CONSOLE.print(f"wrote keypoints of {len(subjects)} subjects to {self.output_dir}")

    def chosen_subjects(self, model: HumanFeatureModel) -> List[SubjectRecord]:
        by_name = {s.name: s for s in model.catalog.subjects}
        names = self.subjects or [s.name for s in model.catalog.subjects if s.split == "test"] or list(by_name)
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise SystemExit(
                f"{self.load_config}: unknown subjects {unknown} (--subjects); expected subjects of its dataset: "
                f"{list(by_name)}"
            )
        return [by_name[n] for n in names]

    def frame_indices(self, subject: SubjectRecord) -> List[int]:
        indices = list(range(len(subject.frames))) if self.frames is None else self.frames
        if any(not 0 <= i < len(subject.frames) for i in indices):
            raise SystemExit(
                f"{self.load_config}: --frames {indices} out of range: expected indices 0..{len(subject.frames) - 1} "
                f"of {subject.name}'s selected frames"
            )
        return indices

    def camera_indices(self, subject: SubjectRecord) -> List[int]:
        cameras = subject.target_cameras if self.cameras is None else self.cameras
        if any(not 0 <= c < len(subject.rig) for c in cameras):
            raise SystemExit(
                f"{self.load_config}: --cameras {cameras} out of range: expected indices 0..{len(subject.rig) - 1} "
                f"of {subject.name}'s cameras"
            )
        return cameras

    def export_subject(self, model: HumanFeatureModel, subject: SubjectRecord, advance: Callable[[], None]) -> None:
        catalog = model.catalog
        subject_index = catalog.subjects.index(subject)
        frames = [
            (catalog.frame_key(subject_index, i), subject.frames[i].frame_id) for i in self.frame_indices(subject)
        ]
        root = self.output_dir / subject.name
        for camera in self.camera_indices(subject):
            name = subject.rig.names[camera]
            overlays = []
            for frame_key, frame_id in frames:
                overlays.append(self.export_view(model, frame_key, camera, root, name, f"{frame_id:06d}"))
                advance()
            if self.video and len(overlays) > 1:
                (root / "videos").mkdir(parents=True, exist_ok=True)
                mediapy.write_video(root / "videos" / f"{name}.mp4", np.stack(overlays), fps=self.fps)
        if self.keypoints_3d:
            for frame_key, frame_id in frames:
                keypoints = translate_keypoints(model.keypoints_3d(frame_key).cpu(), -catalog.world_offset)
                write_keypoints_3d(root / "keypoints3d" / f"{frame_id:06d}", keypoints, BODY25_NAMES)
                advance()

    def export_view(
        self, model: HumanFeatureModel, frame_key: int, camera: int, root: Path, camera_name: str, stem: str
    ) -> np.ndarray:
        """Renders one dataset view, writes its OpenPose JSON and skeleton overlay PNG; returns the overlay."""
        camera_rays = cameras_of_views(model.catalog, [(frame_key, camera)]).to(model.device)
        outputs = model.get_outputs_for_camera(camera_rays)
        keypoints = model.image_metrics.keypoints_2d(outputs["heatmap"])
        json_path = root / "keypoints2d" / camera_name / f"{stem}_keypoints.json"
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(openpose_json(openpose_keypoints(keypoints))))
        overlay = mediapy.to_uint8(outputs["skeleton"].cpu().numpy())
        png_path = root / "overlays" / camera_name / f"{stem}.png"
        png_path.parent.mkdir(parents=True, exist_ok=True)
        mediapy.write_image(png_path, overlay)
        return overlay


def entrypoint() -> None:
    tyro.cli(ExportKeypoints).main()


if __name__ == "__main__":
    entrypoint()
