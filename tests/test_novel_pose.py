"""Novel-pose evaluation: a frame's pose rendered from the source views of another frame of the same subject."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_real_data_paths import setup_pipeline

from nerfstudio_humanfeat.data.datamanagers.human_datamanager import FixedViewLoader


@pytest.fixture(scope="module")
def pipeline(tiny_dataset: Path):
    return setup_pipeline("enerf-heatmap", tiny_dataset, novel_pose=True)


def test_novel_pose_views_pair_each_other_frame_with_the_observation_frame(pipeline):
    manager = pipeline.datamanager
    dataset, catalog = manager.eval_dataset, manager.catalog
    pose_items = [i for i, p in enumerate(dataset.protocols) if p == "novel_pose"]
    view_items = [i for i, p in enumerate(dataset.protocols) if p == "novel_view"]
    test_subject = next(s for s in catalog.subjects if s.split == "test")
    subject_index = catalog.subjects.index(test_subject)
    observed = catalog.frame_key(subject_index, 0)
    # tiny: 2 frames, so frame 1 at each target camera is a novel pose of frame 0's images
    assert len(pose_items) == len(test_subject.target_cameras)
    assert len(view_items) == 2 * len(test_subject.target_cameras)
    for i in pose_items:
        frame_key, camera = dataset.views[i]
        assert dataset.source_frame_keys[i] == observed != frame_key
        assert camera in test_subject.target_cameras
        assert int(dataset.cameras.metadata["source_frame_key"][i]) == observed
    for i in view_items:
        assert dataset.source_frame_keys[i] == dataset.views[i][0]
    # random evaluation draws only what every method renders
    assert set(manager.novel_view_eval_indices) == set(view_items)


def test_a_method_that_cannot_animate_refuses_novel_poses_and_the_pipeline_skips_them(pipeline, monkeypatch):
    manager, model = pipeline.datamanager, pipeline.model
    monkeypatch.setattr(model.config, "eval_keypoints_3d", False)
    pose_index = manager.eval_dataset.protocols.index("novel_pose")
    camera, _ = manager.image_batch(manager.eval_dataset, pose_index)
    with pytest.raises(ValueError, match="not animatable"):
        model.get_outputs_for_camera(camera)
    loader = FixedViewLoader(manager, manager.eval_dataset, [0, pose_index])
    results = pipeline.get_average_image_metrics(loader, image_prefix="eval")
    assert "novel_pose/psnr" not in results and results["psnr"] is not None
    assert "1 novel-pose views not evaluated" in results["notes/novel_pose"]


def test_an_animatable_method_renders_the_pose_frame_from_the_observation_frames_images(pipeline, monkeypatch):
    manager, model = pipeline.datamanager, pipeline.model
    catalog = manager.catalog
    monkeypatch.setattr(type(model), "supports_novel_pose", True)
    monkeypatch.setattr(model.config, "eval_keypoints_3d", False)
    loaded = []
    source_images = catalog.source_images
    monkeypatch.setattr(catalog, "source_images", lambda key, cams: loaded.append(key) or source_images(key, cams))
    pose_index = manager.eval_dataset.protocols.index("novel_pose")
    frame_key, _ = manager.eval_dataset.views[pose_index]
    observed = manager.eval_dataset.source_frame_keys[pose_index]
    loader = FixedViewLoader(manager, manager.eval_dataset, [0, pose_index])
    results = pipeline.get_average_image_metrics(loader, image_prefix="eval")
    assert loaded == [manager.eval_dataset.views[0][0], observed] and observed != frame_key
    assert results["novel_view/psnr"] == pytest.approx(results["psnr"])
    assert results["novel_pose/psnr"] is not None and results["novel_pose/psnr"] != results["psnr"]
