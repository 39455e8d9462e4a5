"""Every frame's SMPL body, reachable by models from training batches and from any rendered camera."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from test_real_data_paths import setup_pipeline

from nerfstudio_humanfeat.body.smpl import SMPL_MODEL_ENV
from nerfstudio_humanfeat.data.catalog import HumanDataError


@pytest.fixture(scope="module")
def pipeline(tiny_dataset: Path):
    return setup_pipeline("enerf-heatmap", tiny_dataset)


def test_frame_body_matches_the_dataset_files(pipeline):
    catalog = pipeline.datamanager.catalog
    for frame_key in (0, catalog.num_frames - 1):
        frame, subject = catalog.frame(frame_key), catalog.subject(frame_key)
        body = catalog.body(frame_key)
        offset = subject.world_offset.numpy()  # the files are in the dataset's world, the catalog is centred
        vertices = np.load(frame.vertices_path) + offset
        joints = np.load(subject.root / "joints3d" / f"{frame.frame_id}.npy") + offset
        assert np.abs(body.vertices.numpy() - vertices).max() < 1e-4
        assert np.abs(body.joints.numpy() - joints).max() < 1e-4
        # the bone transforms carry the canonical joints onto the posed ones
        rest = body.pose.canonical_joints[0]
        moved = (body.bone_transforms[:, :3, :3] @ rest[:, :, None])[..., 0] + body.bone_transforms[:, :3, 3]
        assert torch.allclose(moved, body.joints, atol=1e-4)
        assert set(body.params) == {"poses", "shapes", "Rh", "Th"} and body.params["poses"].shape == (72,)
    assert catalog.body(0) is catalog.body(0)  # posed once


def test_training_batches_and_any_camera_reach_their_frames_body(pipeline):
    manager, model = pipeline.datamanager, pipeline.model
    rays, batch = manager.draw_train_batch()
    frame_key = int(rays.metadata["frame_key"][0])
    assert int(rays.metadata["source_frame_key"][0]) == frame_key == batch["frame_key"]
    assert torch.equal(model.frame_body(frame_key).vertices, manager.catalog.body(frame_key).vertices)
    camera, image_batch = manager.image_batch(manager.eval_dataset, 0)
    assert model.resolve_frame_key(camera) == image_batch["frame_key"]
    assert model.frame_body(model.resolve_frame_key(camera)).joints.shape == (24, 3)


def test_bodies_survive_pickling_the_catalog(pipeline):
    catalog = pipeline.datamanager.catalog
    copy = pickle.loads(pickle.dumps(catalog))
    assert torch.allclose(copy.body(1).vertices, catalog.body(1).vertices)


def test_missing_parameters_or_model_are_named(tiny_dataset: Path, tmp_path: Path, monkeypatch):
    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    shutil.rmtree(data / "body_model")
    monkeypatch.delenv(SMPL_MODEL_ENV, raising=False)
    catalog = setup_pipeline("enerf-heatmap", data).datamanager.catalog
    with pytest.raises(FileNotFoundError, match="body_model/SMPL_NEUTRAL.pkl"):
        catalog.body(0)
    monkeypatch.setenv(SMPL_MODEL_ENV, str(tiny_dataset / "body_model"))
    assert catalog.body(0).vertices.shape[-1] == 3
    catalog.frame(1).smpl_params = None
    with pytest.raises(HumanDataError, match=f"params/{catalog.frame(1).frame_id}.npy"):
        catalog.body(1)


def test_zju_frames_without_3d_keypoints_triangulate_the_2d_detections(tiny_dataset: Path, tmp_path: Path):
    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    given = setup_pipeline("enerf-heatmap", data).datamanager.catalog
    for subject in data.glob("synth_*"):
        shutil.rmtree(subject / "keypoints3d")
        shutil.rmtree(subject / "joints3d")
    catalog = setup_pipeline("enerf-heatmap", data).datamanager.catalog
    assert catalog.subjects[0].keypoint_source == "annots-kpts2d"
    for frame_key in range(catalog.num_frames):
        truth, found = given.frame(frame_key).keypoints3d, catalog.frame(frame_key).keypoints3d
        assert found is not None and found.shape == truth.shape
        seen = (found[:, 3] > 0) & (truth[:, 3] > 0)
        assert seen.sum() >= 20
        error = (found[seen, :3] - truth[seen, :3]).norm(dim=-1)
        assert error.median() < 0.01 and error.max() < 0.05, error
