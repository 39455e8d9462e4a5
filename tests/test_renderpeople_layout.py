"""The RenderPeople layout (SHERF): ns-humanfeat-synth --layout renderpeople, the renderpeople dataparser, inspect."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from layout_helpers import as_numpy, pinhole_keypoints, train_and_eval, truth

from nerfstudio_humanfeat.body.smpl import SMPLBody, smplx_to_zju
from nerfstudio_humanfeat.data import renderpeople_io as rp
from nerfstudio_humanfeat.data.dataparsers import RenderPeopleDataParserConfig
from nerfstudio_humanfeat.data.dataparsers.renderpeople_dataparser import sherf_paper_split
from nerfstudio_humanfeat.data.dataparsers.zju_mocap_dataparser import resolve_split
from nerfstudio_humanfeat.data.zju_io import body25_from_smpl_joints
from nerfstudio_humanfeat.scripts.inspect import InspectConfig, main
from nerfstudio_humanfeat.synth.body_model import load_smpl
from nerfstudio_humanfeat.synth.generator import BODY_MODEL_PATH, generate, make_spec
from nerfstudio_humanfeat.synth.layouts.renderpeople import zju_to_smplx

SPEC = make_spec("tiny", num_subjects=2, num_frames=2, resolution=64, supersample=1, layout="renderpeople")


@pytest.fixture(scope="module")
def rp_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth_renderpeople")
    generate(SPEC, root, progress=False)
    return root


@pytest.fixture(scope="module")
def catalog(rp_root: Path):
    config = RenderPeopleDataParserConfig(data=rp_root, center_subjects=False)  # the reader, in the files' world
    return config.setup().get_dataparser_outputs("train").metadata["catalog"]


def test_layout_files(rp_root: Path) -> None:
    assert SPEC.num_cameras == 36
    assert (rp_root / "human_list.txt").read_text() == "synth_000\nsynth_001\n"
    subject = rp_root / "synth_000"
    assert (subject / "img" / "camera0035" / "0001.jpg").is_file()
    assert (subject / "mask" / "camera0035" / "0001.png").is_file()
    assert not (subject / "annots.npy").exists() and not (subject / "keypoints2d").exists()
    cameras = json.loads((subject / "cameras.json").read_text())
    assert sorted(cameras) == [f"camera{c:04d}" for c in range(36)]
    assert {k: np.asarray(v).shape for k, v in cameras["camera0000"].items()} == {"K": (3, 3), "R": (3, 3), "T": (3,)}
    centre = -np.asarray(cameras["camera0000"]["R"]).T @ np.asarray(cameras["camera0000"]["T"])
    assert 2.5 < np.linalg.norm(centre[:2]) < 3.5, "T must be in metres"
    smpl = np.load(subject / "outputs_re_fitting" / "refit_smpl_2nd.npz", allow_pickle=True)["smpl"].item()
    assert {k: v.shape for k, v in smpl.items()} == {
        "betas": (1, 10), "global_orient": (2, 3), "body_pose": (2, 69), "transl": (2, 3)
    }  # fmt: skip


def test_smplx_convention_round_trip_and_posed_body(rp_root: Path) -> None:
    """The smplx parameters written pose the same body through smplx (rotation about the root joint + transl)."""
    smpl = load_smpl(rp_root / BODY_MODEL_PATH)
    body = SMPLBody(smpl).double()
    state = truth(rp_root, SPEC)["synth_000"][1]
    fit = np.load(rp_root / "synth_000" / rp.SMPL_FIT, allow_pickle=True)["smpl"].item()
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float64)  # noqa: E731
    betas = t(fit["betas"]).expand(2, -1)
    out = smpl(
        betas=betas.float(), global_orient=t(fit["global_orient"]).float(), body_pose=t(fit["body_pose"]).float(),
        transl=t(fit["transl"]).float(),
    )  # fmt: skip
    np.testing.assert_allclose(out.vertices.detach().numpy(), state.vertices, atol=1e-4)
    rh, th = smplx_to_zju(body, t(fit["global_orient"]), t(fit["transl"]), betas)
    np.testing.assert_allclose(th.numpy(), state.th, atol=1e-5)
    back = zju_to_smplx(body, rh, th, betas)[1]
    np.testing.assert_allclose(back.numpy(), fit["transl"], atol=1e-5)


def test_dataparser_reads_back_cameras_smpl_vertices_and_keypoints(rp_root: Path, catalog) -> None:
    truths = truth(rp_root, SPEC)
    assert [(s.name, s.split, s.source_cameras) for s in catalog.subjects] == [
        ("synth_000", "train", [0, 16, 31]), ("synth_001", "test", [0, 16, 31])
    ]  # fmt: skip
    for s, subject in enumerate(catalog.subjects):
        plan, state, _ = truths[subject.name]
        cams, rig = plan.cameras, subject.rig
        assert subject.target_cameras == [c for c in range(36) if c not in (0, 16, 31)]
        assert rig.names[:2] == ["camera0000", "camera0001"] and subject.keypoint_source == rp.KEYPOINT_SOURCE
        np.testing.assert_allclose(as_numpy(rig.original_intrinsics), cams.intrinsics, atol=1e-4)
        np.testing.assert_allclose(as_numpy(rig.world_to_camera[:, :, :3]), cams.rotation, atol=1e-6)
        np.testing.assert_allclose(as_numpy(rig.world_to_camera[:, :, 3]), cams.translation, atol=1e-6)
        assert not rig.distortion.any()
        for f, frame in enumerate(subject.frames):
            params = {k: as_numpy(v) for k, v in frame.smpl_params.items()}
            np.testing.assert_allclose(params["poses"], state.poses[f], atol=1e-6)  # [0, 0, 0] + body_pose
            np.testing.assert_allclose(params["Rh"], state.rh[f], atol=1e-6)
            np.testing.assert_allclose(params["Th"], state.th[f], atol=1e-5)
            np.testing.assert_allclose(params["shapes"], state.shapes[f], atol=1e-6)
            key = catalog.frame_key(s, f)
            np.testing.assert_allclose(as_numpy(catalog.body(key).vertices), state.vertices[f], atol=1e-4)
            box = as_numpy(frame.bbox)
            np.testing.assert_allclose(box[0], state.vertices[f].min(0) - 0.05, atol=1e-4)
            np.testing.assert_allclose(box[1], state.vertices[f].max(0) + 0.05, atol=1e-4)
            expected3d = body25_from_smpl_joints(state.joints[f])
            np.testing.assert_allclose(as_numpy(frame.keypoints3d), expected3d, atol=1e-4)
            for c in range(len(rig)):
                kp = as_numpy(frame.keypoints2d[c])
                seen = kp[:, 2] > 0
                assert seen.sum() == (expected3d[:, 3] > 0).sum()  # all SMPL-twin joints are in the image
                expected = pinhole_keypoints(
                    expected3d[:, :3], cams.intrinsics[c], cams.rotation[c], cams.translation[c]
                )
                np.testing.assert_allclose(kp[seen, :2], expected[seen], atol=1e-3)
        view = catalog.load_view(catalog.frame_key(s, 0), 16)
        assert view.rgb8.shape == (64, 64, 3) and 0.01 < float(view.mask.float().mean()) < 0.5


def test_sherf_split_and_defaults(rp_root: Path) -> None:
    names = [f"h{i:03d}" for i in range(500)]
    assert rp.sherf_split(names) == (names[:450], names[450:480])
    assert rp.sherf_split(names[:16]) == (names[:15], names[15:16])
    assert rp.sherf_split(names[:3]) == (names[:2], names[2:3])
    assert rp.sherf_split(names[:1]) == (names[:1], [])
    subjects = rp.find_subjects(rp_root)
    paper = sherf_paper_split(rp_root, subjects)
    assert (paper.train, paper.test) == (("synth_000",), ("synth_001",))
    no_splits = RenderPeopleDataParserConfig(data=rp_root / "nowhere")
    plan = resolve_split(no_splits, subjects, paper)
    assert (plan.frame_start, plan.frame_end, plan.frame_stride) == (0, 20, 2)
    assert plan.cameras_of(36) == ([0, 16, 31], [c for c in range(36) if c not in (0, 16, 31)])


def _inspect(root: Path, capsys) -> tuple:
    code = main(InspectConfig(data=root))
    return code, capsys.readouterr().out


def test_inspect_names_a_missing_smpl_fit_and_a_camera_count_mismatch(rp_root: Path, tmp_path: Path, capsys) -> None:
    code, out = _inspect(rp_root, capsys)
    assert code == 0 and "Layout: renderpeople" in out and "No problem found" in out, out
    root = tmp_path / "copy"
    shutil.copytree(rp_root, root)
    (root / "synth_000" / rp.SMPL_FIT).unlink()
    shutil.rmtree(root / "synth_001" / "img" / "camera0035")
    code, out = _inspect(root, capsys)
    assert code == 1, out
    assert f"{root / 'synth_000' / rp.SMPL_FIT}: SMPL fit not found" in out
    assert f"{root / 'synth_001' / 'cameras.json'}: camera count mismatch" in out


def test_a_method_trains_and_evaluates_on_the_layout(rp_root: Path, tmp_path: Path) -> None:
    results = train_and_eval(rp_root, "renderpeople", tmp_path)
    assert np.isfinite(results["psnr"]) and results["psnr"] > 0
