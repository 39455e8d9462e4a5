"""The Human3.6M layout (Animatable NeRF): ns-humanfeat-synth --layout h36m, the human36m dataparser, inspect."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from layout_helpers import as_numpy, pinhole_keypoints, train_and_eval, truth

from nerfstudio_humanfeat.body.skinning import sample_weights
from nerfstudio_humanfeat.body.smpl import SMPLBody
from nerfstudio_humanfeat.data.dataparsers import Human36MDataParserConfig
from nerfstudio_humanfeat.data.dataparsers.human36m_dataparser import ANINERF_SPLIT, Human36M
from nerfstudio_humanfeat.data.dataparsers.zju_mocap_dataparser import resolve_split
from nerfstudio_humanfeat.data.h36m_io import frame_weight_grid, load_weight_grid, world_to_smpl_space
from nerfstudio_humanfeat.scripts.inspect import InspectConfig, main
from nerfstudio_humanfeat.synth.body_model import build_body_model, load_smpl
from nerfstudio_humanfeat.synth.generator import BODY_MODEL_PATH, generate, make_spec

SPEC = make_spec("tiny", num_subjects=2, num_frames=2, resolution=64, supersample=1, layout="h36m")


@pytest.fixture(scope="module")
def h36m(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth_h36m")
    generate(SPEC, root, progress=False)
    return root


@pytest.fixture(scope="module")
def catalog(h36m: Path):
    return Human36MDataParserConfig(data=h36m).setup().get_dataparser_outputs("train").metadata["catalog"]


def test_layout_files(h36m: Path) -> None:
    assert SPEC.num_cameras == 4
    assert sorted(p.name for p in h36m.iterdir()) == ["S1", "S5", "body_model", "splits.json"]
    seq = h36m / "S1" / "Posing"
    annots = np.load(seq / "annots.npy", allow_pickle=True).item()
    assert annots["ims"][1]["ims"] == ["54138969/000001.jpg", "55011271/000001.jpg", "58860488/000001.jpg",
                                       "60457274/000001.jpg"]  # fmt: skip
    assert not (seq / "mask").exists() and not (seq / "params").exists()
    assert set(np.unique(cv2.imread(str(seq / "mask_cihp/54138969/000001.png"), cv2.IMREAD_UNCHANGED))) == {0, 1}
    assert np.load(seq / "lbs" / "parents.npy").tolist()[:4] == [-1, 0, 0, 0]
    assert np.load(seq / "lbs" / "bweights" / "1.npy").shape[-1] == 25


def test_dataparser_reads_back_cameras_smpl_vertices_and_keypoints(h36m: Path, catalog) -> None:
    truths = truth(h36m, SPEC)
    assert [(s.name, s.split, s.source_cameras, s.target_cameras) for s in catalog.subjects] == [
        ("S1", "train", [0, 1, 2], [3]), ("S5", "test", [0, 1, 2], [3])
    ]  # fmt: skip
    for s, subject in enumerate(catalog.subjects):
        plan, state, keypoints = truths[subject.name]
        cams, rig = plan.cameras, subject.rig
        offset = as_numpy(subject.world_offset)  # the dataparser's centring: the catalog's world = the files' + offset
        assert np.linalg.norm(offset) > 0.1
        np.testing.assert_allclose(as_numpy(rig.original_intrinsics), cams.intrinsics, atol=1e-4)
        np.testing.assert_allclose(as_numpy(rig.world_to_camera[:, :, :3]), cams.rotation, atol=1e-6)
        translation = cams.translation - cams.rotation @ offset  # T in mm in the file
        np.testing.assert_allclose(as_numpy(rig.world_to_camera[:, :, 3]), translation, atol=1e-5)
        np.testing.assert_allclose(as_numpy(rig.distortion), cams.distortion, atol=1e-7)
        for f, frame in enumerate(subject.frames):
            params = {k: as_numpy(v) for k, v in frame.smpl_params.items()}
            np.testing.assert_allclose(params["poses"], state.poses[f], atol=1e-6)
            np.testing.assert_allclose(params["Rh"], state.rh[f], atol=1e-6)
            np.testing.assert_allclose(params["Th"], state.th[f] + offset, atol=1e-6)
            np.testing.assert_allclose(params["shapes"], state.shapes[f], atol=1e-6)
            key = catalog.frame_key(s, f)
            np.testing.assert_allclose(as_numpy(catalog.body(key).vertices), state.vertices[f] + offset, atol=1e-4)
            # 2D: annots kpts2d, undistorted; 3D (the layout has none): triangulated from them.
            kp3d = as_numpy(frame.keypoints3d)
            found = kp3d[:, 3] > 0
            assert found.sum() >= 20
            np.testing.assert_allclose(kp3d[found, :3], keypoints[f][found] + offset, atol=2e-3)
            for c in range(len(rig)):
                kp = as_numpy(frame.keypoints2d[c])
                seen = kp[:, 2] > 0
                assert seen.sum() >= 15
                expected = pinhole_keypoints(keypoints[f], cams.intrinsics[c], cams.rotation[c], cams.translation[c])
                np.testing.assert_allclose(kp[seen, :2], expected[seen], atol=0.02)


def test_weight_grids_are_in_each_frames_smpl_space(h36m: Path, catalog) -> None:
    body = build_body_model()
    surface = np.unique(body.faces)
    subject = catalog.subjects[0]
    for f, frame in enumerate(subject.frames):
        grid = frame_weight_grid(subject, f)
        world = np.load(frame.vertices_path) + subject.world_offset.numpy()  # the catalog's (centred) world
        vertices = world_to_smpl_space(world, frame.smpl_params["Rh"], frame.smpl_params["Th"])
        weights, distance = sample_weights(grid, torch.from_numpy(vertices[surface]).float())
        assert float(distance.abs().max()) < 0.03  # on the surface, up to the grid's interpolation
        agree = (weights.argmax(-1).numpy() == body.weights[surface].argmax(-1)).mean()
        assert agree > 0.9, agree
        world_grid_distance = sample_weights(grid, frame_body_world(frame))[1]
        assert float(world_grid_distance.median()) > 0.05 or np.allclose(frame.smpl_params["Rh"], 0)
    lbs = subject.root / "lbs"
    smpl = SMPLBody(load_smpl(h36m / BODY_MODEL_PATH))
    tvertices, joints = smpl.rest(subject.frames[0].smpl_params["shapes"][None])
    np.testing.assert_allclose(np.load(lbs / "joints.npy"), joints[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(np.load(lbs / "tvertices.npy"), tvertices[0].numpy(), atol=1e-5)
    canonical = load_weight_grid(lbs / "tbw.npy", tvertices[0].numpy())
    _, distance = sample_weights(canonical, tvertices[0, surface].float())
    assert float(distance.abs().max()) < 0.03


def frame_body_world(frame) -> torch.Tensor:
    return torch.from_numpy(np.load(frame.vertices_path)).float()


def test_paper_defaults_without_splits_json() -> None:
    config = Human36MDataParserConfig(data=Path("/nonexistent"))
    sequences = {name: Path(name) for name in ("S1", "S6", "S9", "S2")}
    plan = resolve_split(config, sequences, ANINERF_SPLIT)
    assert (plan.train, plan.test, plan.frame_stride, plan.frame_end) == (["S1", "S6"], ["S9"], 5, None)
    assert plan.cameras_of(4) == ([0, 1, 2], [3])
    assert Human36M.name == "human36m" and config.mask_mode == "mask_cihp"


def _inspect(root: Path, capsys) -> tuple:
    code = main(InspectConfig(data=root))
    return code, capsys.readouterr().out


def test_inspect_names_a_missing_weight_grid_and_a_camera_count_mismatch(h36m: Path, tmp_path: Path, capsys) -> None:
    code, out = _inspect(h36m, capsys)
    assert code == 0 and "Layout: h36m" in out and "No problem found" in out, out
    root = tmp_path / "copy"
    shutil.copytree(h36m, root)
    seq = root / "S5" / "Posing"
    (seq / "lbs" / "bweights" / "1.npy").unlink()
    extra = seq / "Camera_B5" / "000000.jpg"
    extra.parent.mkdir()
    shutil.copy(seq / "54138969" / "000000.jpg", extra)
    code, out = _inspect(root, capsys)
    assert code == 1 and "2 problem(s)" in out, out
    assert str(seq / "lbs" / "bweights" / "1.npy") in out
    assert f"{seq / 'annots.npy'}: camera count mismatch" in out and "Camera_B5" in out


def test_a_method_trains_and_evaluates_on_the_layout(h36m: Path, tmp_path: Path) -> None:
    results = train_and_eval(h36m, "human36m", tmp_path)
    assert np.isfinite(results["psnr"]) and results["psnr"] > 0
