"""ns-humanfeat-orbit's camera paths: a fixed frame, or (--animate) the subject's frames in turn."""

from __future__ import annotations

from pathlib import Path

from nerfstudio_humanfeat.data.dataparsers.zju_mocap_dataparser import ZJUMocapDataParserConfig
from nerfstudio_humanfeat.scripts.orbit import orbit_camera_path


def test_an_animated_orbit_walks_through_the_subjects_frames_in_order(tiny_dataset: Path) -> None:
    catalog = ZJUMocapDataParserConfig(data=tiny_dataset).setup().get_dataparser_outputs("train").metadata["catalog"]
    subject_index = next(i for i, s in enumerate(catalog.subjects) if s.split == "test")
    count = len(catalog.subjects[subject_index].frames)
    frames = [catalog.frame_key(subject_index, i % count) for i in range(5)]
    fixed = orbit_camera_path(catalog, frames[0], 5, 1.0)
    walking = orbit_camera_path(catalog, frames[0], 5, 1.0, frames=frames)
    assert {c["render_time"] for c in fixed["camera_path"]} == {catalog.time_of(frames[0])}
    walked = [catalog.frame_key_from_time(c["render_time"]) for c in walking["camera_path"]]
    assert walked == frames and len(set(walked)) == count
    poses = [c["camera_to_world"] for c in walking["camera_path"]]
    assert poses == [c["camera_to_world"] for c in fixed["camera_path"]]
