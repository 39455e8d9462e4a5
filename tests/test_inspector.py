"""The viewer inspector's geometry: skeleton segments, viser camera poses, and the view it opens on."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import viser.transforms as vtf
from nerfstudio.viewer.viewer import VISER_NERFSTUDIO_SCALE_RATIO

from nerfstudio_humanfeat.camera_utils import look_at_world_to_camera
from nerfstudio_humanfeat.data.dataparsers.zju_mocap_dataparser import ZJUMocapDataParserConfig
from nerfstudio_humanfeat.skeleton import BODY25_LIMBS, BODY25_NAMES
from nerfstudio_humanfeat.viewer.inspector import opening_view, skeleton_segments, viser_camera_pose


def test_skeleton_segments_skip_limbs_with_a_missing_joint() -> None:
    keypoints = torch.cat([torch.randn(len(BODY25_NAMES), 3), torch.ones(len(BODY25_NAMES), 1)], dim=1)
    assert len(skeleton_segments(keypoints)) == len(BODY25_LIMBS)
    neck = BODY25_NAMES.index("Neck")
    keypoints[neck, 3] = 0.0
    segments = skeleton_segments(keypoints)
    assert len(segments) == len(BODY25_LIMBS) - sum(neck in limb for limb in BODY25_LIMBS)
    a, b = next((a, b) for a, b in BODY25_LIMBS if neck not in (a, b))
    assert any(np.allclose(s, keypoints[a, :3]) and np.allclose(e, keypoints[b, :3]) for s, e in segments)


def test_viser_camera_pose_looks_along_the_opencv_axis_from_the_scaled_centre() -> None:
    center, target = torch.tensor([2.0, -1.0, 1.5]), torch.tensor([0.0, 0.0, 1.0])
    world_to_camera = look_at_world_to_camera(center, target)
    rot, trans = world_to_camera[:3, :3].double(), world_to_camera[:3, 3].double()
    camera_to_world = torch.cat([rot.T, (-rot.T @ trans)[:, None]], dim=1)
    wxyz, position = viser_camera_pose(camera_to_world)
    assert np.allclose(position, center.numpy() * VISER_NERFSTUDIO_SCALE_RATIO, atol=1e-5)
    forward = vtf.SO3(np.asarray(wxyz)).as_matrix()[:, 2]  # viser cameras look along +z, as OpenCV's
    expected = (target - center).double().numpy()
    assert math.isclose(float(forward @ expected / np.linalg.norm(expected)), 1.0, abs_tol=1e-6)


def test_the_viewer_opens_on_a_target_camera_of_the_first_evaluation_subject(tiny_dataset: Path) -> None:
    catalog = ZJUMocapDataParserConfig(data=tiny_dataset).setup().get_dataparser_outputs("train").metadata["catalog"]
    test_subject = next(s for s in catalog.subjects if s.split == "test")
    key = catalog.frame_key(catalog.subjects.index(test_subject), 0)
    frame_key, camera = opening_view(catalog, key)
    assert frame_key == key and camera == test_subject.target_cameras[0]
    # the frame's box centre lies in front of that camera and projects inside its image
    rig = test_subject.rig
    centre = catalog.frame(key).bbox.mean(0).double()
    in_camera = rig.world_to_camera[camera].double() @ torch.cat([centre, centre.new_ones(1)])
    pixel = rig.intrinsics[camera].double() @ in_camera
    u, v = (pixel[:2] / pixel[2]).tolist()
    assert in_camera[2] > 0 and 0 <= u < rig.width and 0 <= v < rig.height
