"""The dataparser's world: subjects centred at the origin by a recorded translation, exports in the dataset's world."""

from __future__ import annotations

from pathlib import Path

import torch

from nerfstudio_humanfeat.body.smpl import SMPLBody, resolve_smpl_model
from nerfstudio_humanfeat.data.dataparsers.zju_mocap_dataparser import ZJUMocapDataParserConfig
from nerfstudio_humanfeat.data.world import translate_keypoints, translate_world_to_camera


def project(world_to_camera: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    camera = points @ world_to_camera[:3, :3].T + world_to_camera[:3, 3]
    return camera[:, :2] / camera[:, 2:]


def test_moved_cameras_see_moved_points_where_they_saw_the_originals() -> None:
    generator = torch.Generator().manual_seed(0)
    rotation = torch.linalg.qr(torch.randn(3, 3, generator=generator))[0]
    world_to_camera = torch.cat([rotation, torch.tensor([[0.1], [0.2], [4.0]])], dim=1)
    points = torch.randn(10, 3, generator=generator) * 0.5
    offset = torch.tensor([1.5, -2.0, 0.7])
    moved = translate_world_to_camera(world_to_camera, offset)
    assert torch.allclose(project(moved, points + offset), project(world_to_camera, points), atol=1e-5)
    assert torch.equal(moved[:, :3], world_to_camera[:, :3])


def test_missing_keypoints_stay_missing_when_moved() -> None:
    keypoints = torch.tensor([[1.0, 2.0, 3.0, 0.9], [0.0, 0.0, 0.0, 0.0]])
    moved = translate_keypoints(keypoints, torch.tensor([1.0, 1.0, 1.0]))
    assert torch.equal(moved, torch.tensor([[2.0, 3.0, 4.0, 0.9], [0.0, 0.0, 0.0, 0.0]]))


def test_a_moved_body_is_the_body_posed_with_a_moved_translation(tiny_dataset: Path) -> None:
    body = SMPLBody.from_file(resolve_smpl_model(None, tiny_dataset))
    generator = torch.Generator().manual_seed(1)
    poses, shapes = torch.randn(1, 72, generator=generator) * 0.2, torch.randn(1, 10, generator=generator)
    rh, th = torch.tensor([[0.3, -0.2, 1.0]]), torch.tensor([[0.5, 0.1, 0.9]])
    offset = torch.tensor([-0.4, 2.0, -0.9])
    moved = body(poses, shapes, rh, th).translated(offset)
    expected = body(poses, shapes, rh, th + offset)
    for name in ("vertices", "joints", "transforms", "global_transform", "canonical_vertices"):
        assert torch.allclose(getattr(moved, name), getattr(expected, name), atol=1e-5), name


def test_the_dataparser_centres_the_subjects_and_records_the_translation(tiny_dataset: Path) -> None:
    plain = ZJUMocapDataParserConfig(data=tiny_dataset, center_subjects=False).setup()
    centred = ZJUMocapDataParserConfig(data=tiny_dataset).setup()
    offset = centred.catalog.world_offset
    assert float(offset.norm()) > 0.1  # the generator stands people on the floor: their centre is ~0.9 m up
    centres = torch.stack([f.bbox.mean(0) for s in centred.catalog.subjects for f in s.frames])
    assert float(centres.mean(0).abs().max()) < 1e-5

    for key in (0, centred.catalog.num_frames - 1):
        before, after = plain.catalog.frame(key), centred.catalog.frame(key)
        assert torch.allclose(after.bbox, before.bbox + offset, atol=1e-5)
        present = before.keypoints3d[:, 3] > 0
        assert torch.allclose(after.keypoints3d[present, :3], before.keypoints3d[present, :3] + offset, atol=1e-5)
        assert torch.allclose(centred.catalog.body(key).vertices, plain.catalog.body(key).vertices + offset, atol=1e-4)
        # every camera sees the moved body where it saw the original
        rig_before, rig_after = plain.catalog.subject(key).rig, centred.catalog.subject(key).rig
        for camera in range(len(rig_after)):
            pixels = project(rig_after.world_to_camera[camera], after.keypoints3d[present, :3])
            assert torch.allclose(pixels, project(rig_before.world_to_camera[camera], before.keypoints3d[present, :3]),
                                  atol=1e-4)  # fmt: skip

    # nerfstudio's record of it: transformed = T @ original, scale 1; camera poses follow it
    outputs, original = centred.get_dataparser_outputs("train"), plain.get_dataparser_outputs("train")
    transform = outputs.dataparser_transform
    assert outputs.dataparser_scale == 1.0 and torch.allclose(transform[:, 3], offset)
    moved_origins = original.cameras.camera_to_worlds[:, :, 3] @ transform[:, :3].T + transform[:, 3]
    assert torch.allclose(outputs.cameras.camera_to_worlds[:, :, 3], moved_origins, atol=1e-5)
    assert torch.allclose(outputs.scene_box.aabb, original.scene_box.aabb + offset, atol=1e-5)
    back = outputs.transform_poses_to_original_space(outputs.cameras.camera_to_worlds, camera_convention="opengl")
    assert torch.allclose(back, original.cameras.camera_to_worlds, atol=1e-5)
    assert torch.allclose(centred.catalog.to_dataset_world(centred.catalog.frame(0).bbox), plain.catalog.frame(0).bbox,
                          atol=1e-5)  # fmt: skip


class _CatalogOnlyModel(torch.nn.Module):
    """What NerfPoseRenderer reads of a model before it renders: its catalog, device and animatability."""

    supports_novel_pose = True
    device = torch.device("cpu")

    def __init__(self, catalog) -> None:
        super().__init__()
        self.catalog = catalog


def test_neuhmr_nerf_renderer_carries_the_videos_world_into_the_models(tiny_dataset: Path) -> None:
    from nerfstudio_humanfeat.refine.io import load_sequence, load_video
    from nerfstudio_humanfeat.refine.metrics import pose_sequence
    from nerfstudio_humanfeat.refine.nerf_renderer import NerfPoseRenderer

    catalog = ZJUMocapDataParserConfig(data=tiny_dataset).setup().catalog
    offset = catalog.world_offset
    name, camera = "synth_002", 1
    video = load_video(tiny_dataset / name, camera)  # the dataset's world, as NeuHMR works
    initial = load_sequence(tiny_dataset / name / "params").select_ids(video.frame_ids)
    renderer = NerfPoseRenderer(_CatalogOnlyModel(catalog), video, name, camera, initial)
    poses = pose_sequence(SMPLBody.from_file(resolve_smpl_model(None, tiny_dataset)), initial)
    for frame in range(len(video)):
        key = renderer.frame_keys[frame]
        target = renderer._target(frame, poses[frame])
        # the pose moved into the catalog's world is the catalog's own body of that frame (initial = the fits here)
        assert torch.allclose(target.target_pose.joints, catalog.body(key).joints[None], atol=1e-4)
        assert torch.allclose(catalog.frame(key).smpl_params["Th"], initial.Th[frame] + offset, atol=1e-5)
        # and the camera sees it where the video's camera sees the dataset-world pose
        pixels = project(target.world_to_camera, target.target_pose.joints[0])
        assert torch.allclose(pixels, project(video.world_to_camera, poses[frame].joints[0]), atol=1e-4)
        assert torch.allclose(target.world_to_camera, catalog.subject(key).rig.world_to_camera[camera], atol=1e-5)
    origins = renderer._rays(torch.tensor([[10.0, 20.0]])).origins
    assert torch.allclose(origins[0], catalog.subjects[2].rig.centers[camera], atol=1e-4)
