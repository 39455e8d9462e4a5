"""ns-humanfeat-orbit: write an ns-render camera path that circles one subject at one frame.

    ns-humanfeat-orbit --data data/synth-demo --subject synth_004 --output orbit.json
    ns-render camera-path --load-config .../config.yml --camera-path-filename orbit.json \
        --rendered-output-names rgb skeleton --output-path orbit.mp4

With ``--animate`` the path also walks through the subject's frames (each camera renders the next frame's pose);
an animatable method renders them all from one frame's images, a novel-pose video of an unseen person:

    ns-humanfeat-orbit --data data/synth-demo --animate --output walk.json
    HUMANFEAT_SOURCE_FRAME=0 ns-render camera-path --load-config .../anipixel/.../config.yml \
        --camera-path-filename walk.json --output-path walk.mp4
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch
import tyro
from nerfstudio.utils.rich_utils import CONSOLE

from nerfstudio_humanfeat.camera_utils import look_at_world_to_camera, opengl_c2w_from_opencv_w2c
from nerfstudio_humanfeat.data.catalog import HumanCatalog
from nerfstudio_humanfeat.data.dataparsers.zju_mocap_dataparser import ZJUMocapDataParserConfig


@dataclass
class Orbit:
    """Write a camera path orbiting a subject, at the distance and height of its dataset cameras."""

    data: Path
    """Dataset root (as given to ns-train --data)."""
    output: Path = Path("orbit.json")
    """Camera path JSON for `ns-render camera-path --camera-path-filename`."""
    subject: Optional[str] = None
    """Subject (sequence folder) to circle; default: the first test subject."""
    frame: int = 0
    """Frame index within the subject's selected frames."""
    num_views: int = 36
    """Cameras along the orbit."""
    seconds: float = 3.0
    """Video length."""
    resolution: Optional[int] = None
    """Render height and width; default: the dataset's output resolution."""
    animate: bool = False
    """Walk through the subject's frames along the orbit (camera i renders frame (frame + i) mod frames)."""

    def main(self) -> None:
        catalog: HumanCatalog = (
            ZJUMocapDataParserConfig(data=self.data).setup().get_dataparser_outputs("train").metadata["catalog"]
        )
        names = [s.name for s in catalog.subjects]
        if self.subject is None:
            self.subject = next((s.name for s in catalog.subjects if s.split == "test"), names[0])
        if self.subject not in names:
            raise SystemExit(f"unknown subject {self.subject!r}; the dataset has {names}")
        subject_index = names.index(self.subject)
        subject = catalog.subjects[subject_index]
        if not 0 <= self.frame < len(subject.frames):
            raise SystemExit(f"{self.subject} has frames 0..{len(subject.frames) - 1}, not {self.frame}")
        frame_key = catalog.frame_key(subject_index, self.frame)
        frames = None
        if self.animate:
            count = len(subject.frames)
            frames = [catalog.frame_key(subject_index, (self.frame + i) % count) for i in range(self.num_views)]
        path = orbit_camera_path(catalog, frame_key, self.num_views, self.seconds, self.resolution, frames)
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self.output.write_text(json.dumps(path, indent=1))
        what = f"{len(subject.frames)} frames of {self.subject}" if self.animate else catalog.describe(frame_key)
        CONSOLE.print(f"wrote {self.num_views} cameras around {what} to {self.output}")


def orbit_camera_path(
    catalog: HumanCatalog,
    frame_key: int,
    num_views: int,
    seconds: float,
    resolution: Optional[int] = None,
    frames: Optional[Sequence[int]] = None,
) -> dict:
    """A nerfstudio camera-path dict circling the frame's body at its rig's mean distance and height; camera i renders
    ``frames[i]`` (frame keys) when given, else the frame."""
    rig = catalog.subject(frame_key).rig
    bbox = catalog.frame(frame_key).bbox
    center = bbox.mean(dim=0)
    offsets = rig.centers - center
    radius = float(offsets[:, :2].norm(dim=-1).mean())
    height = float(offsets[:, 2].mean())
    size = resolution or rig.height
    focal = float(rig.intrinsics[:, 1, 1].mean()) * size / rig.height
    fov = math.degrees(2.0 * math.atan(size / 2.0 / focal))
    cameras = []
    for i in range(num_views):
        angle = 2.0 * math.pi * i / num_views
        eye = center + torch.tensor([radius * math.cos(angle), radius * math.sin(angle), height])
        c2w = opengl_c2w_from_opencv_w2c(look_at_world_to_camera(eye, center))
        matrix = torch.cat([c2w, torch.tensor([[0.0, 0.0, 0.0, 1.0]])]).reshape(-1).tolist()
        cameras.append(
            {
                "camera_to_world": matrix,
                "fov": fov,
                "aspect": 1.0,
                "render_time": catalog.time_of(frame_key if frames is None else frames[i]),
            }
        )
    return {
        "camera_type": "perspective",
        "render_height": size,
        "render_width": size,
        "seconds": seconds,
        "camera_path": cameras,
    }


def entrypoint() -> None:
    tyro.cli(Orbit).main()


if __name__ == "__main__":
    entrypoint()
