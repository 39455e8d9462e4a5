"""The ZJU-MoCap readers and the zju-mocap dataparser, on tiny sequences written in the real layout."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path
from typing import Tuple

import cv2
import numpy as np
import pytest
import torch
import tyro
from zju_fixtures import (
    BODY_HALF_SIZE,
    SequenceSpec,
    SequenceTruth,
    _render,
    red_centroid,
    rewrite_annots,
    write_dataset,
)

from nerfstudio_humanfeat.data.catalog import HumanCatalog, HumanDataError
from nerfstudio_humanfeat.data.dataparsers import zju_mocap_dataparser
from nerfstudio_humanfeat.data.dataparsers.zju_mocap_dataparser import ZJUMocap, ZJUMocapDataParserConfig
from nerfstudio_humanfeat.data.zju_io import frame_number, load_annots
from nerfstudio_humanfeat.skeleton import BODY25_FROM_SMPL, BODY25_NAMES

DISTORTION = (-0.3, 0.1, 0.002, -0.001, 0.0)


def make_parser(root: Path, **kwargs) -> ZJUMocap:
    kwargs.setdefault("center_subjects", False)  # the readers, checked in the dataset's world (tests/test_world.py)
    return ZJUMocapDataParserConfig(data=root, **kwargs).setup()


def single(root: Path, spec: SequenceSpec, **kwargs) -> Tuple[SequenceTruth, ZJUMocap, HumanCatalog]:
    """One sequence as the only (training) subject."""
    truth = write_dataset(root, [spec])[spec.name]
    parser = make_parser(root, subjects_train=(spec.name,), **kwargs)
    return truth, parser, parser.catalog


def expected_pixels(truth: SequenceTruth, camera: int, points: np.ndarray, scale: float) -> np.ndarray:
    """Output pixels (pixel centres at +0.5) of world points, from the fixture's own K, R, T in metres."""
    return (truth.project(camera, points) + 0.5) * scale


def box_points(truth: SequenceTruth, frame: int) -> np.ndarray:
    corners = np.array(np.meshgrid(*truth.boxes[frame].T, indexing="ij")).reshape(3, -1).T
    return np.concatenate([corners, truth.markers[frame][None]])


def test_naming_schemes_parse_to_the_same_cameras_and_frames(tmp_path):
    write_dataset(tmp_path, [SequenceSpec(name="CoreView_377"), SequenceSpec(name="CoreView_313", naming="legacy")])
    catalog = make_parser(tmp_path).catalog  # GHNeRF's split: 377 trains, 313 is held out
    b_style, legacy = catalog.subjects
    assert (b_style.name, b_style.split, legacy.name, legacy.split) == ("CoreView_377", "train", "CoreView_313", "test")
    assert b_style.rig.names == [f"Camera_B{n}" for n in range(1, 5)]
    assert legacy.rig.names == [f"Camera ({n})" for n in range(1, 5)]
    torch.testing.assert_close(b_style.rig.intrinsics, legacy.rig.intrinsics)
    torch.testing.assert_close(b_style.rig.world_to_camera, legacy.rig.world_to_camera)
    assert [f.frame_id for f in b_style.frames] == [0, 1, 2]
    assert [f.frame_id for f in legacy.frames] == [1, 2, 3]
    assert legacy.frames[0].image_paths[1].name.startswith("CoreView_313_Camera_(2)_0001_")
    for frame_b, frame_l in zip(b_style.frames, legacy.frames):
        torch.testing.assert_close(frame_b.bbox, frame_l.bbox)
        torch.testing.assert_close(frame_b.keypoints2d, frame_l.keypoints2d)
        torch.testing.assert_close(frame_b.smpl_params["Th"], frame_l.smpl_params["Th"])
    view_b = catalog.load_view(catalog.frame_key(0, 2), 1)
    view_l = catalog.load_view(catalog.frame_key(1, 2), 1)
    torch.testing.assert_close(view_b.image, view_l.image)
    torch.testing.assert_close(view_b.mask, view_l.mask)


def test_missing_camera_folders_keep_the_annots_order(tmp_path):
    spec = SequenceSpec(name="CoreView_313", naming="legacy", num_cameras=5, missing_cameras=(3, 4))
    truth, _, catalog = single(tmp_path, spec)
    rig = catalog.subjects[0].rig
    assert rig.names == ["Camera (1)", "Camera (2)", "Camera (5)", "Camera (6)", "Camera (7)"]
    np.testing.assert_allclose(rig.centers.numpy(), truth.centers, atol=1e-4)


def test_one_based_frame_numbers_map_to_their_smpl_files(tmp_path):
    spec = SequenceSpec(name="CoreView_315", naming="legacy", num_frames=4, num_cameras=2)
    truth, _, catalog = single(tmp_path, spec, frame_start=1, bbox_padding=0.05)
    frames = catalog.subjects[0].frames
    assert [f.frame_id for f in frames] == [2, 3, 4]
    for position, frame in enumerate(frames, start=1):
        center = truth.boxes[position].mean(0)
        np.testing.assert_allclose(frame.smpl_params["Th"].numpy(), center, atol=1e-6)
        assert frame.vertices_path.name == f"{position + 1}.npy"
        np.testing.assert_allclose(frame.bbox.numpy(), truth.boxes[position] + [[-0.05], [0.05]], atol=1e-5)


def test_frame_numbers_from_image_names():
    assert frame_number("Camera_B1/000012.jpg") == 12
    assert frame_number("Camera (1)/CoreView_313_Camera_(1)_0013_20190823101010.jpg") == 13
    with pytest.raises(HumanDataError, match="img_a.jpg"):
        frame_number("Camera_B1/img_a.jpg")


def test_translation_in_millimetres_puts_cameras_where_they_are(tmp_path):
    truth, _, catalog = single(tmp_path, SequenceSpec(d_row=True))
    rig = catalog.subjects[0].rig
    np.testing.assert_allclose(rig.centers.numpy(), truth.centers, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(rig.centers.numpy()[:, :2], axis=1), 3.0, atol=1e-4)
    raw_t = np.load(truth.root / "annots.npy", allow_pickle=True).item()["cams"]["T"][0]
    assert np.abs(raw_t).max() > 100  # the file really holds millimetres


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_images_and_keypoints_are_undistorted_consistently(tmp_path, scale):
    spec = SequenceSpec(size=128, distortion=DISTORTION, num_frames=1)
    truth, _, catalog = single(tmp_path, spec, image_scale=scale, mask_mode="none")
    for camera in range(spec.num_cameras):
        view = catalog.load_view(0, camera)
        assert view.image.shape == (128 * scale, 128 * scale, 3)
        expected = expected_pixels(truth, camera, truth.markers[0][None], scale)[0]
        np.testing.assert_allclose(red_centroid(view.image.numpy()), expected, atol=1.0)
        raw = cv2.cvtColor(cv2.imread(str(truth.root / truth.image_rel[0][camera])), cv2.COLOR_BGR2RGB)
        assert np.abs(red_centroid(raw) - expected / scale).max() > 2.0  # the distortion is really there

        keypoints = view.keypoints2d.numpy()
        valid = truth.keypoints3d[0, :, 3] > 0
        np.testing.assert_allclose(keypoints[valid, 2], 1.0)
        points = truth.keypoints3d[0, valid, :3]
        np.testing.assert_allclose(keypoints[valid, :2], expected_pixels(truth, camera, points, scale), atol=0.02)
        assert (keypoints[~valid] == 0).all()


MASK_CASES = [
    (("mask", "mask_cihp"), "union", ("upper", "lower")),
    (("mask", "mask_cihp"), "mask", ("upper",)),
    (("mask", "mask_cihp"), "mask_cihp", ("lower",)),
    (("mask", "mask_cihp"), "none", None),
    (("mask",), "union", ("upper",)),
    (("mask_cihp",), "union", ("lower",)),
    (("mask_cihp",), "mask", ("lower",)),
    ((), "union", None),
]


@pytest.mark.parametrize("folders,mode,layers", MASK_CASES)
@pytest.mark.parametrize("mask_value", [1, 255])
def test_masks_follow_the_folders_present(tmp_path, capsys, folders, mode, layers, mask_value):
    spec = SequenceSpec(masks=folders, mask_value=mask_value, num_frames=1, num_cameras=2)
    truth, _, catalog = single(tmp_path, spec, mask_mode=mode)
    for camera in range(2):
        mask = catalog.load_view(0, camera).mask.numpy()
        if layers is None:
            assert mask.all()
        else:
            rendered = _render(truth, camera, 0)
            expected = np.logical_or.reduce([rendered[name] for name in layers])
            assert expected.any() and not expected.all()
            np.testing.assert_array_equal(mask, expected)
    out = capsys.readouterr().out
    assert out.count("every pixel counts as foreground") == (1 if not folders and mode != "none" else 0)


def test_new_params_and_vertices_are_preferred(tmp_path):
    truth, _, catalog = single(tmp_path, SequenceSpec(smpl_dirs="both"), bbox_padding=0.1)
    assert catalog.bbox_padding == 0.1
    for index, frame in enumerate(catalog.subjects[0].frames):
        np.testing.assert_allclose(frame.smpl_params["Th"].numpy(), truth.boxes[index].mean(0), atol=1e-6)
        assert frame.vertices_path.parent.name == "new_vertices"
        np.testing.assert_allclose(frame.bbox.numpy(), truth.boxes[index] + [[-0.1], [0.1]], atol=1e-5)


def test_bbox_falls_back_to_joints_without_vertices(tmp_path):
    truth, _, catalog = single(tmp_path, SequenceSpec(vertices=False, keypoints=("joints3d",)))
    box = catalog.subjects[0].frames[0].bbox.numpy()
    assert (box[0] <= truth.boxes[0, 0] + BODY_HALF_SIZE * 0.5).all() and (box[1] >= truth.boxes[0, 0]).all()
    # only 2D detections: the box of the keypoints triangulated from them
    _, _, triangulated = single(tmp_path / "tri", SequenceSpec(vertices=False, keypoints=("annots",)))
    tri_box = triangulated.subjects[0].frames[0].bbox.numpy()
    assert (tri_box[0] <= truth.boxes[0, 0] + BODY_HALF_SIZE * 0.5).all() and (tri_box[1] >= truth.boxes[0, 0]).all()
    with pytest.raises(HumanDataError, match=r"vertices/0\.npy"):
        single(tmp_path / "none", SequenceSpec(vertices=False, keypoints=()))


KEYPOINT_CASES = [
    (("annots", "openpose", "keypoints3d"), "annots-kpts2d"),
    (("openpose", "keypoints3d"), "openpose-json"),
    (("keypoints3d", "joints3d"), "keypoints3d-projected"),
    (("joints3d",), "joints3d-projected"),
]


@pytest.mark.parametrize("sources,expected_source", KEYPOINT_CASES)
def test_keypoint_sources_in_priority_order(tmp_path, sources, expected_source):
    spec = SequenceSpec(
        size=96, keypoints=sources, distortion=DISTORTION, openpose_offset=7.0 * (sources[0] != "openpose")
    )
    truth, _, catalog = single(tmp_path, spec, image_scale=0.5)
    subject = catalog.subjects[0]
    assert subject.keypoint_source == expected_source
    valid = truth.keypoints3d[0, :, 3] > 0
    if expected_source == "joints3d-projected":
        valid &= np.isin(BODY25_NAMES, list(BODY25_FROM_SMPL))
    for frame_index, frame in enumerate(subject.frames):
        keypoints = frame.keypoints2d.numpy()
        for camera in range(spec.num_cameras):
            points = truth.keypoints3d[frame_index, valid, :3]
            expected = expected_pixels(truth, camera, points, 0.5)
            np.testing.assert_allclose(keypoints[camera, valid, :2], expected, atol=0.02)
            assert (keypoints[camera, valid, 2] > 0).all()
            assert (keypoints[camera, ~valid] == 0).all()
    if "keypoints3d" in sources:
        np.testing.assert_allclose(subject.frames[1].keypoints3d.numpy(), truth.keypoints3d[1], atol=1e-6)


def test_missing_keypoints_stay_missing(tmp_path):
    spec = SequenceSpec(keypoints=("openpose",), missing_joints=(0, 4, 24))
    truth = write_dataset(tmp_path, [spec])[spec.name]
    (truth.root / "keypoints2d" / truth.image_rel[1][2]).with_suffix(".json").unlink()
    catalog = make_parser(tmp_path, subjects_train=(spec.name,)).catalog
    keypoints = catalog.subjects[0].frames[1].keypoints2d
    assert (keypoints[2] == 0).all()  # no JSON for this view: every joint missing
    assert (keypoints[:, [0, 4, 24]] == 0).all() and (keypoints[[0, 1, 3]][:, 5:24, 2] == 1).all()
    assert catalog.load_view(catalog.frame_key(0, 1), 2).keypoints2d[:, 2].eq(0).all()


def test_no_keypoint_source(tmp_path):
    _, _, catalog = single(tmp_path, SequenceSpec(keypoints=()))
    assert catalog.subjects[0].keypoint_source == "none"
    assert catalog.load_view(0, 1).keypoints2d is None


def test_frame_range_and_stride(tmp_path):
    spec = SequenceSpec(num_frames=10, num_cameras=2, masks=(), keypoints=())
    write_dataset(tmp_path, [spec])

    def frame_ids(**kwargs):
        return [f.frame_id for f in make_parser(tmp_path, **kwargs).catalog.subjects[0].frames]

    assert frame_ids(frame_start=2, frame_end=8, frame_stride=3) == [2, 5]
    assert frame_ids(frame_end=None) == list(range(10))
    assert frame_ids(frame_end=4) == [0, 1, 2, 3]
    assert frame_ids() == list(range(10))  # GHNeRF's first 600 frames
    splits = {"train_subjects": [spec.name], "test_subjects": [], "frames": {"start": 1, "end": None, "stride": 4}}
    (tmp_path / "splits.json").write_text(json.dumps(splits))
    assert frame_ids() == [1, 5, 9]
    assert frame_ids(frame_stride=2) == [1, 3, 5, 7, 9]


def test_image_scale(tmp_path):
    spec = SequenceSpec(num_frames=1, num_cameras=2, keypoints=())
    truth, _, catalog = single(tmp_path, spec)
    rig = catalog.subjects[0].rig
    assert (rig.height, rig.width, rig.original_height) == (64, 64, 64)  # small images keep their size
    np.testing.assert_allclose(rig.intrinsics[:, :2, 2].numpy(), truth.K[:, :2, 2] + 0.5, atol=1e-5)

    rig = make_parser(tmp_path, subjects_train=(spec.name,), image_scale=0.5).catalog.subjects[0].rig
    assert (rig.height, rig.width) == (32, 32)
    np.testing.assert_allclose(rig.intrinsics[:, 0, 0].numpy(), truth.K[:, 0, 0] * 0.5, rtol=1e-6)
    np.testing.assert_allclose(rig.intrinsics[:, :2, 2].numpy(), (truth.K[:, :2, 2] + 0.5) * 0.5, atol=1e-5)

    big = SequenceSpec(name="CoreView_394", size=1024, num_frames=1, num_cameras=1, masks=(), keypoints=())
    write_dataset(tmp_path / "big", [big])
    catalog = make_parser(tmp_path / "big").catalog
    assert (catalog.subjects[0].rig.height, catalog.subjects[0].rig.width) == (512, 512)
    assert catalog.load_view(0, 0).image.shape == (512, 512, 3)


def test_nerfstudio_cameras_project_like_opencv(tmp_path):
    truth, parser, catalog = single(tmp_path, SequenceSpec(num_frames=2), image_scale=0.5)
    outputs = parser.get_dataparser_outputs("train")
    cameras, views = outputs.cameras, outputs.metadata["views"]
    rig = catalog.subjects[0].rig
    for index, (frame_key, camera) in enumerate(views):
        points = box_points(truth, frame_key)
        expected = expected_pixels(truth, camera, points, 0.5)
        cam_points = points @ rig.world_to_camera[camera, :, :3].double().numpy().T
        cam_points += rig.world_to_camera[camera, :, 3].double().numpy()
        projected = cam_points @ rig.intrinsics[camera].double().numpy().T
        np.testing.assert_allclose(projected[:, :2] / projected[:, 2:], expected, atol=1e-3)

        coords = torch.tensor(expected[:, ::-1].copy(), dtype=torch.float32)
        rays = cameras.generate_rays(camera_indices=torch.full((len(points), 1), index), coords=coords)
        offsets = torch.tensor(points, dtype=torch.float32) - rays.origins
        along = (offsets * rays.directions).sum(-1, keepdim=True)
        assert (along > 0).all()
        assert (offsets - along * rays.directions).norm(dim=-1).max() < 1e-4
    assert cameras.times.shape == (len(views), 1)
    np.testing.assert_allclose(cameras.times[:, 0].numpy(), [catalog.time_of(k) for k, _ in views], atol=1e-7)
    assert cameras.metadata["frame_key"].dtype == torch.long and cameras.metadata["frame_key"].shape == (len(views), 1)
    assert cameras.metadata["camera_index"][:, 0].tolist() == [c for _, c in views]


def test_outputs_share_one_catalog_of_all_subjects(tmp_path):
    write_dataset(tmp_path, [SequenceSpec(name="CoreView_377"), SequenceSpec(name="CoreView_313", naming="legacy")])
    parser = make_parser(tmp_path)
    assert parser.includes_time
    train, test = parser.get_dataparser_outputs("train"), parser.get_dataparser_outputs("test")
    catalog = train.metadata["catalog"]
    assert test.metadata["catalog"] is catalog and parser.get_dataparser_outputs("val").metadata["catalog"] is catalog
    assert train.metadata["views"] == [(k, c) for k in range(3) for c in (1, 3)]
    assert test.metadata["views"] == [(k, c) for k in range(3, 6) for c in (1, 3)]
    for outputs in (train, test):
        assert outputs.image_filenames == [catalog.frame(k).image_paths[c] for k, c in outputs.metadata["views"]]
        assert all(p.is_file() for p in outputs.image_filenames)
        torch.testing.assert_close(outputs.dataparser_transform, torch.eye(4)[:3])
        assert outputs.dataparser_scale == 1.0
        for key, _ in outputs.metadata["views"]:
            assert (outputs.scene_box.aabb[0] <= catalog.frame(key).bbox[0]).all()
            assert (outputs.scene_box.aabb[1] >= catalog.frame(key).bbox[1]).all()
    assert catalog.subjects[0].source_cameras == [0, 2] and catalog.subjects[1].target_cameras == [1, 3]
    restored = pickle.loads(pickle.dumps(catalog))
    torch.testing.assert_close(restored.load_view(4, 1).image, catalog.load_view(4, 1).image)

    every = make_parser(tmp_path, train_targets="all", eval_max_views=3)
    assert every.get_dataparser_outputs("train").metadata["views"] == [(k, c) for k in range(3) for c in range(4)]
    assert len(every.get_dataparser_outputs("test").metadata["views"]) == 3


def test_splits_json_sets_subjects_and_cameras(tmp_path):
    specs = [SequenceSpec(name=f"synth_{i:03d}", num_frames=2, keypoints=()) for i in range(3)]
    splits = {
        "train_subjects": ["synth_000", "synth_001"],
        "test_subjects": ["synth_002"],
        "source_cameras": [0, 1],
        "target_cameras": [2, 3],
    }
    write_dataset(tmp_path, specs, splits)
    parser = make_parser(tmp_path)
    catalog = parser.catalog
    assert [(s.name, s.split) for s in catalog.subjects] == [
        ("synth_000", "train"),
        ("synth_001", "train"),
        ("synth_002", "test"),
    ]
    assert catalog.subjects[2].source_cameras == [0, 1] and catalog.subjects[2].target_cameras == [2, 3]
    assert len(parser.get_dataparser_outputs("test").metadata["views"]) == 4
    other = make_parser(tmp_path, subjects_train=("synth_002",), subjects_test=(), target_cameras=(1,))
    assert [s.name for s in other.catalog.subjects] == ["synth_002"]
    assert other.get_dataparser_outputs("train").metadata["views"] == [(0, 1), (1, 1)]
    with pytest.raises(HumanDataError, match="split 'test' has no view"):
        other.get_dataparser_outputs("test")
    mixed = make_parser(tmp_path, subjects_train=("synth_000",)).catalog  # the test subjects still come from the file
    assert [(s.name, s.split) for s in mixed.subjects] == [("synth_000", "train"), ("synth_002", "test")]


def test_synthetic_dataset_parses_with_its_splits(tiny_dataset):
    splits = json.loads((tiny_dataset / "splits.json").read_text())
    parser = make_parser(tiny_dataset)
    train, test = parser.get_dataparser_outputs("train"), parser.get_dataparser_outputs("test")
    catalog = train.metadata["catalog"]
    assert [s.name for s in catalog.subjects] == splits["train_subjects"] + splits["test_subjects"]
    assert [s.split for s in catalog.subjects] == ["train"] * 2 + ["test"]
    assert {catalog.subject(k).name for k, _ in test.metadata["views"]} == set(splits["test_subjects"])
    for subject in catalog.subjects:
        assert (subject.source_cameras, subject.target_cameras) == (splits["source_cameras"], splits["target_cameras"])
        assert subject.keypoint_source == "annots-kpts2d" and subject.rig.height == 96
    frame = catalog.subjects[2].frames[0]
    rig = catalog.subjects[2].rig
    for camera in range(4):  # undistorted annotated keypoints agree with the projected 3D keypoints
        cam = frame.keypoints3d[:, :3] @ rig.world_to_camera[camera, :, :3].T + rig.world_to_camera[camera, :, 3]
        uv = cam @ rig.intrinsics[camera].T
        torch.testing.assert_close(frame.keypoints2d[camera, :, :2], uv[:, :2] / uv[:, 2:], atol=1e-3, rtol=0)
    view = catalog.load_view(test.metadata["views"][0][0], 1)
    assert view.image.shape == (96, 96, 3) and view.mask.any() and view.densepose is not None


def test_config_is_registered_and_parses_from_the_command_line(tmp_path):
    assert isinstance(zju_mocap_dataparser.config, ZJUMocapDataParserConfig)
    args = ["--data", str(tmp_path), "--frame-end", "None", "--subjects-train", "a", "b", "--source-cameras", "0"]
    config = tyro.cli(ZJUMocapDataParserConfig, args=args)
    assert (config.frame_end, config.subjects_train, config.source_cameras) == (None, ("a", "b"), (0,))
    assert tyro.cli(ZJUMocapDataParserConfig, args=["--frame-end", "300"]).frame_end == 300


# --------------------------------------------------------------------------------------------- bad inputs


@pytest.fixture
def good(tmp_path) -> SequenceTruth:
    return write_dataset(tmp_path, [SequenceSpec(name="CoreView_377")])["CoreView_377"]


def parse_good(truth: SequenceTruth, **kwargs) -> HumanCatalog:
    return make_parser(truth.root.parent, **kwargs).catalog


def raises_naming(path: Path, *more: str):
    return pytest.raises(HumanDataError, match=re.escape(str(path)) + "".join(f".*{m}" for m in more))


def test_missing_annots_is_named(good):
    (good.root / "annots.npy").unlink()
    with raises_naming(good.root / "annots.npy", "not found"):
        load_annots(good.root / "annots.npy")
    with raises_naming(good.root / "annots.npy", "not found"):
        parse_good(good, subjects_train=("CoreView_377",))


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda a: a["cams"].update(K=a["cams"]["K"][:-1]), "K, D, R, T"),
        (lambda a: a["ims"][1].update(ims=a["ims"][1]["ims"][:-1]), r"ims\[1\] lists 3 images"),
        (lambda a: a.pop("cams"), "missing key 'cams'"),
        (lambda a: a["cams"]["K"][2].__setitem__((0, 2), np.nan), r"cams\['K'\]\[2\] holds NaN"),
        (lambda a: a["cams"]["D"][1].__setitem__(0, np.inf), r"cams\['D'\]\[1\] holds NaN"),
        (lambda a: a["cams"]["R"][0].__imul__(2.0), r"cams\['R'\]\[0\] is not a rotation"),
        (lambda a: a["ims"][2]["ims"].__setitem__(1, "Camera_B2/000007.jpg"), r"ims\[2\] mixes frame numbers"),
    ],
)
def test_broken_annots_are_named(good, change, message):
    rewrite_annots(good.root, change)
    with raises_naming(good.root / "annots.npy", message):
        parse_good(good)


def test_annots_that_are_not_a_dict(good):
    np.save(good.root / "annots.npy", np.zeros(3))
    with raises_naming(good.root / "annots.npy", "expected a pickled dict"):
        parse_good(good)


def test_nan_params_are_named(good):
    params = np.load(good.root / "params" / "1.npy", allow_pickle=True).item()
    params["poses"][0, 5] = np.nan
    np.save(good.root / "params" / "1.npy", params)
    with raises_naming(good.root / "params" / "1.npy", "NaN"):
        parse_good(good)


def test_missing_image_is_named_at_parse_time(good):
    path = good.root / good.image_rel[1][3]
    path.unlink()
    with raises_naming(path, "does not exist"):
        parse_good(good)


def test_corrupt_and_truncated_images_are_named_when_loaded(good):
    catalog = parse_good(good)
    corrupt, truncated = good.root / good.image_rel[1][1], good.root / good.image_rel[2][1]
    corrupt.write_bytes(b"not a jpeg at all")
    truncated.write_bytes(truncated.read_bytes()[:-200])
    with raises_naming(corrupt, "cannot decode"):
        catalog.load_view(1, 1)
    with raises_naming(truncated, "truncated"):
        catalog.load_view(2, 1)


def test_unreadable_first_image_is_named_at_parse_time(good):
    path = good.root / good.image_rel[0][2]
    path.write_bytes(b"garbage")
    with raises_naming(path, "not a readable image"):
        parse_good(good)


def test_image_of_another_size_is_named(good):
    catalog = parse_good(good)
    path = good.root / good.image_rel[1][3]
    cv2.imwrite(str(path), np.zeros((32, 48, 3), np.uint8))
    with raises_naming(path, "48x32 differs"):
        catalog.load_view(1, 3)


def test_split_errors_are_clear(good, tmp_path):
    with raises_naming(tmp_path / "CoreView_999", "not found"):
        parse_good(good, subjects_train=("CoreView_999",))
    with raises_naming(good.root / "annots.npy", r"target camera indices \[9\] out of range"):
        parse_good(good, target_cameras=(1, 9))
    with raises_naming(tmp_path / "nowhere", "data root not found"):
        _ = make_parser(tmp_path / "nowhere").catalog
    (tmp_path / "empty").mkdir()
    with raises_naming(tmp_path / "empty", "no sequence"):
        _ = make_parser(tmp_path / "empty").catalog
    other = write_dataset(tmp_path / "other", [SequenceSpec(name="actor_a", num_frames=1)])["actor_a"]
    with raises_naming(other.root.parent, "no splits.json.*sequences found: actor_a"):
        _ = make_parser(other.root.parent).catalog
