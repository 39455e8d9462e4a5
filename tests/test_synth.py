"""Tests of the synthetic dataset generator (ns-humanfeat-synth) on the `tiny` preset."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any, Dict

import cv2
import numpy as np
import pytest
import smplx
import torch
import tyro

from nerfstudio_humanfeat.skeleton import BODY25_NAMES, SMPL_PARENTS
from nerfstudio_humanfeat.synth.background import BACKGROUNDS, DOME_RADIUS, studio
from nerfstudio_humanfeat.synth.body_model import NUM_VERTICES, build_body_model, load_smpl, pose_body
from nerfstudio_humanfeat.synth.generator import (
    BODY_MODEL_PATH,
    PRESETS,
    DistortionMap,
    Renderer,
    animate,
    generate,
    make_spec,
    plan_subject,
    vertex_normals,
)
from nerfstudio_humanfeat.synth.motions import MOTION_NAMES, motion, sample_motion_params
from nerfstudio_humanfeat.synth.raycast import pixel_rays, raycast

SUBJECTS = ["synth_000", "synth_001", "synth_002"]
SMPL_KEYS = {"v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f"}


def load_annots(seq: Path) -> dict:
    return np.load(seq / "annots.npy", allow_pickle=True).item()


def read_mask(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, path
    return image


def project(points: np.ndarray, cams: dict, c: int) -> np.ndarray:
    rvec = cv2.Rodrigues(np.asarray(cams["R"][c], dtype=np.float64))[0]
    tvec = np.asarray(cams["T"][c], dtype=np.float64).reshape(3, 1) / 1000.0
    uv, _ = cv2.projectPoints(points.astype(np.float64), rvec, tvec, cams["K"][c], cams["D"][c])
    return uv.reshape(-1, 2)


def views(root: Path):
    for name in SUBJECTS:
        seq = root / name
        annots = load_annots(seq)
        for frame, entry in enumerate(annots["ims"]):
            for c, rel in enumerate(entry["ims"]):
                yield seq, annots, frame, c, rel


def assert_same(a: Any, b: Any) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b)
    else:
        assert a == b


def test_layout_and_splits(tiny_dataset: Path) -> None:
    spec = PRESETS["tiny"]
    splits = json.loads((tiny_dataset / "splits.json").read_text())
    assert splits["train_subjects"] == SUBJECTS[:2]
    assert splits["test_subjects"] == SUBJECTS[2:]
    assert splits["source_cameras"] == [0, 2, 4, 6]
    assert splits["target_cameras"] == [1, 3, 5, 7]
    assert splits["frames"] == {"start": 0, "end": None, "stride": 1}
    assert splits["mask_dilation"] == 0  # exact masks: a dilated one would keep background around the person
    for name in SUBJECTS:
        seq = tiny_dataset / name
        annots = load_annots(seq)
        cams = annots["cams"]
        assert len(cams["K"]) == len(cams["D"]) == len(cams["R"]) == len(cams["T"]) == spec.num_cameras
        for c in range(spec.num_cameras):
            assert np.asarray(cams["D"][c]).shape == (5, 1)
            assert np.asarray(cams["T"][c]).shape == (3, 1)
            rot = np.asarray(cams["R"][c])
            np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-9)
            centre = -rot.T @ np.asarray(cams["T"][c])[:, 0] / 1000.0
            assert 2.5 < np.linalg.norm(centre[:2]) < 3.5 and 1.3 < centre[2] < 1.8, "T must be in millimetres"
        assert len(annots["ims"]) == spec.num_frames
        for frame, entry in enumerate(annots["ims"]):
            assert entry["ims"] == [f"Camera_B{c + 1}/{frame:06d}.jpg" for c in range(spec.num_cameras)]
            assert entry["kpts2d"].shape == (spec.num_cameras, 25, 3)
            params = np.load(seq / "params" / f"{frame}.npy", allow_pickle=True).item()
            assert {k: v.shape for k, v in params.items()} == {
                "poses": (1, 72), "Rh": (1, 3), "Th": (1, 3), "shapes": (1, 10)
            }  # fmt: skip
            assert np.all(params["poses"][0, :3] == 0)
            assert np.load(seq / "vertices" / f"{frame}.npy").shape == (NUM_VERTICES, 3)
            assert np.load(seq / "joints3d" / f"{frame}.npy").shape == (24, 3)
            for rel in entry["ims"]:
                image = cv2.imread(str(seq / rel))
                assert image.shape == (spec.resolution, spec.resolution, 3)
                stem = rel[: -len(".jpg")]
                mask = read_mask(seq / "mask" / f"{stem}.png")
                cihp = read_mask(seq / "mask_cihp" / f"{stem}.png")
                assert set(np.unique(mask)) == {0, 255}
                assert set(np.unique(cihp)) <= {0, 1}
                assert np.all(mask[cihp > 0] > 0), "mask_cihp is an eroded mask"
                assert image[mask == 0].mean() < 2.0, "background is black"
                assert image[mask > 0].mean() > 20.0
    assert (tiny_dataset / BODY_MODEL_PATH).is_file()


def test_body_model_loads_and_poses_with_smplx(tiny_dataset: Path) -> None:
    path = tiny_dataset / BODY_MODEL_PATH
    with open(path, "rb") as f:
        data = pickle.load(f, encoding="latin1")
    assert set(data) == SMPL_KEYS
    assert data["kintree_table"].shape == (2, 24)
    np.testing.assert_array_equal(data["kintree_table"][0, 1:], SMPL_PARENTS[1:])
    assert data["J_regressor"].shape == (24, NUM_VERTICES) and data["shapedirs"].shape == (NUM_VERTICES, 3, 10)
    smpl = smplx.SMPL(model_path=str(path))
    assert smpl.J_regressor.shape[0] == 24 and smpl.v_template.shape == (NUM_VERTICES, 3)
    gen = torch.Generator().manual_seed(0)
    out = smpl(
        betas=torch.randn(2, 10, generator=gen),
        body_pose=0.3 * torch.randn(2, 69, generator=gen),
        global_orient=torch.zeros(2, 3),
        transl=torch.zeros(2, 3),
    )
    assert out.vertices.shape == (2, NUM_VERTICES, 3) and torch.isfinite(out.vertices).all()
    assert out.joints.shape[1] >= 24 and torch.isfinite(out.joints).all()
    rest = smpl(betas=torch.zeros(1, 10)).vertices[0].detach()
    height = rest[:, 1].max() - rest[:, 1].min()
    assert 1.6 < float(height) < 1.8
    taller = smpl(betas=torch.tensor([[2.0] + [0.0] * 9])).vertices[0].detach()
    assert float(taller[:, 1].max() - taller[:, 1].min()) > float(height) + 0.1


def test_landmarks_are_hidden_and_move_with_shape() -> None:
    body = build_body_model()
    ids = body.body25_vertex_ids()
    assert ids.shape == (25,) and len(set(ids.tolist())) == 25
    assert not np.isin(ids, body.faces).any(), "landmark vertices must not be referenced by faces"
    assert np.isin(np.arange(NUM_VERTICES)[body.surface_vertex_mask()], body.faces).all()
    np.testing.assert_array_equal(body.joint_regressor.argmax(1), body.joint_vertex_ids)
    np.testing.assert_array_equal(body.joint_regressor.sum(1), np.ones(24))
    np.testing.assert_allclose(body.weights.sum(1), 1.0, atol=1e-9)
    nose, neck = body.v_template[ids[BODY25_NAMES.index("Nose")]], body.v_template[ids[BODY25_NAMES.index("Neck")]]
    assert nose[1] > neck[1] and nose[2] > neck[2] + 0.05, "the nose is above the neck, on the front (+z)"
    toe, heel = body.v_template[ids[BODY25_NAMES.index("LBigToe")]], body.v_template[ids[BODY25_NAMES.index("LHeel")]]
    assert toe[2] > heel[2] + 0.15


def test_params_reproduce_vertices_through_smplx(tiny_dataset: Path) -> None:
    smpl = load_smpl(tiny_dataset / BODY_MODEL_PATH)
    for name in SUBJECTS:
        seq = tiny_dataset / name
        params = np.load(seq / "params" / "1.npy", allow_pickle=True).item()
        t = {k: torch.from_numpy(v) for k, v in params.items()}
        verts, joints = pose_body(smpl, t["poses"], t["shapes"], t["Rh"], t["Th"])
        np.testing.assert_allclose(verts[0].numpy(), np.load(seq / "vertices" / "1.npy"), atol=1e-4)
        np.testing.assert_allclose(joints[0].numpy(), np.load(seq / "joints3d" / "1.npy"), atol=1e-4)
        assert abs(float(verts[0, :, 2].min())) < 0.01, "feet on the ground"


def test_keypoints_project_onto_kpts2d_and_into_mask(tiny_dataset: Path) -> None:
    kernel = np.ones((5, 5), np.uint8)
    counts = {0.0: 0, 0.5: 0, 1.0: 0}
    for seq, annots, frame, c, rel in views(tiny_dataset):
        kp3d = json.loads((seq / "keypoints3d" / f"{frame:06d}.json").read_text())[0]["keypoints3d"]
        points = np.asarray(kp3d)[:, :3]
        kpts2d = annots["ims"][frame]["kpts2d"][c]
        conf = kpts2d[:, 2]
        assert set(np.unique(conf)) <= {0.0, 0.5, 1.0}
        for value in counts:
            counts[value] += int((conf == value).sum())
        seen = conf > 0
        uv = project(points, annots["cams"], c)
        assert np.abs(uv[seen] - kpts2d[seen, :2]).max() < 0.5
        stem = rel[: -len(".jpg")]
        openpose = json.loads((seq / "keypoints2d" / f"{stem}.json").read_text())
        np.testing.assert_allclose(
            np.asarray(openpose["people"][0]["pose_keypoints_2d"]).reshape(25, 3), kpts2d, atol=1e-3
        )
        mask = cv2.dilate((read_mask(seq / "mask" / f"{stem}.png") > 0).astype(np.uint8), kernel) > 0
        visible = np.round(kpts2d[conf == 1, :2]).astype(int)
        assert mask[visible[:, 1], visible[:, 0]].all(), f"{seq.name} {stem}: a visible joint lies off the mask"
    total = sum(counts.values())
    assert counts[1.0] > 0.6 * total and counts[0.5] > 0, counts


def test_face_keypoints_are_occluded_from_behind(tiny_dataset: Path) -> None:
    nose, ears = BODY25_NAMES.index("Nose"), [BODY25_NAMES.index("REar"), BODY25_NAMES.index("LEar")]
    checked = {0.5: 0, 1.0: 0}
    for seq, annots, frame, c, _ in views(tiny_dataset):
        points = np.asarray(json.loads((seq / "keypoints3d" / f"{frame:06d}.json").read_text())[0]["keypoints3d"])
        face = points[nose, :3] - points[ears, :3].mean(axis=0)
        rot, t = np.asarray(annots["cams"]["R"][c]), np.asarray(annots["cams"]["T"][c])[:, 0] / 1000.0
        to_camera = -rot.T @ t - points[nose, :3]
        cos = face @ to_camera / (np.linalg.norm(face) * np.linalg.norm(to_camera))
        conf = annots["ims"][frame]["kpts2d"][c, nose, 2]
        if cos < -0.5:
            assert conf == 0.5, f"{seq.name} camera {c}: the nose is seen from behind the head"
            checked[0.5] += 1
        elif cos > 0.5:
            assert conf == 1.0, f"{seq.name} camera {c}: the nose faces the camera"
            checked[1.0] += 1
    assert min(checked.values()) > 0, checked


def test_vertices_project_into_mask(tiny_dataset: Path) -> None:
    for seq, annots, frame, c, rel in views(tiny_dataset):
        verts = np.load(seq / "vertices" / f"{frame}.npy")
        mask = read_mask(seq / "mask" / rel.replace(".jpg", ".png")) > 0
        uv = np.round(project(verts, annots["cams"], c)).astype(int)
        inside = (uv >= 0).all(1) & (uv[:, 0] < mask.shape[1]) & (uv[:, 1] < mask.shape[0])
        hit = np.zeros(len(uv), dtype=bool)
        hit[inside] = mask[uv[inside, 1], uv[inside, 0]]
        near = np.zeros(len(uv), dtype=bool)
        near[inside] = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8))[uv[inside, 1], uv[inside, 0]] > 0
        # Tube meshes put a few percent of their vertices exactly on the silhouette, where rounding to the
        # nearest pixel centre falls outside the mask half of the time.
        assert hit.mean() > 0.85, f"{seq.name} {rel}: only {hit.mean():.3f} of the vertices land on the mask"
        assert near.mean() > 0.995, f"{seq.name} {rel}: {near.mean():.4f} of the vertices within 1 px of the mask"


def test_densepose_files(tiny_dataset: Path) -> None:
    for seq, _, _, _, rel in views(tiny_dataset):
        stem = rel[: -len(".jpg")]
        with np.load(seq / "densepose" / f"{stem}.npz") as dp:
            assert set(dp.files) == {"embedding", "mask", "bbox_min", "bbox_max"}
            emb, mask = dp["embedding"], dp["mask"]
            assert emb.dtype == np.float16 and emb.shape == (96, 96, 3)
            assert mask.dtype == np.uint8 and mask.shape == (96, 96) and set(np.unique(mask)) == {0, 1}
            assert dp["bbox_min"].dtype == np.float32 and dp["bbox_max"].shape == (3,)
            assert np.all(dp["bbox_max"] - dp["bbox_min"] > 0.2)
        assert emb.min() >= 0.0 and emb.max() <= 1.0
        assert np.all(emb[mask == 0] == 0)
        assert np.all(emb[mask == 1].max(axis=-1) > 0)
        np.testing.assert_array_equal(mask > 0, read_mask(seq / "mask" / f"{stem}.png") > 0)


def test_determinism(tiny_dataset: Path, tmp_path: Path) -> None:
    generate(make_spec("tiny", seed=0, num_subjects=1), tmp_path / "same", progress=False)
    generate(make_spec("tiny", seed=1, num_subjects=1), tmp_path / "other", progress=False)
    reference = load_annots(tiny_dataset / "synth_000")
    assert_same(load_annots(tmp_path / "same" / "synth_000"), reference)
    image = "synth_000/Camera_B3/000001.jpg"
    assert (tmp_path / "same" / image).read_bytes() == (tiny_dataset / image).read_bytes()
    other = load_annots(tmp_path / "other" / "synth_000")
    assert not np.allclose(np.stack(other["cams"]["K"]), np.stack(reference["cams"]["K"]))
    assert not np.allclose(other["ims"][0]["kpts2d"], reference["ims"][0]["kpts2d"])


def test_refuses_to_overwrite(tiny_dataset: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        generate(make_spec("tiny", num_subjects=1, num_frames=1, num_cameras=1), tmp_path, progress=False)
    generate(make_spec("tiny", num_subjects=1, num_frames=1, num_cameras=2), tmp_path, overwrite=True, progress=False)
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    assert len(load_annots(tmp_path / "synth_000")["cams"]["K"]) == 2


def test_motions_follow_the_zju_convention() -> None:
    rng = np.random.default_rng(0)
    params = sample_motion_params(rng)
    times = np.linspace(0.0, 1.0, 5)
    for name in MOTION_NAMES:
        frames = motion(name, times, params)
        assert frames.poses.shape == (5, 72) and np.all(frames.poses[:, :3] == 0)
        assert np.abs(frames.poses).max() > 0.1, f"{name} does not move"
        for rh in frames.rh:
            rot = cv2.Rodrigues(rh)[0]
            np.testing.assert_allclose(rot @ [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], atol=1e-9)
        again = motion(name, times, params)
        np.testing.assert_array_equal(frames.poses, again.poses)
    assert {"walk", "wave", "squat", "turn"} <= set(MOTION_NAMES)


@pytest.mark.parametrize("k1", [-0.05, 0.05])
def test_distortion_map_samples_the_pinhole_render_where_the_lens_maps_it(k1: float) -> None:
    k = np.array([[100.0, 0.0, 60.0], [0.0, 100.0, 66.0], [0.0, 0.0, 1.0]])
    d = np.array([k1, -0.02, 1e-3, -1e-3, 0.0])
    dmap = DistortionMap.build(k, d, 128, 128)
    ys, xs = np.mgrid[0:128:9, 0:128:9]
    ideal = np.stack([dmap.map_x[ys, xs], dmap.map_y[ys, xs]], -1).reshape(-1, 2) - dmap.margin
    rays = np.concatenate([(ideal - k[:2, 2]) / 100.0, np.ones((len(ideal), 1))], axis=1)
    uv, _ = cv2.projectPoints(rays, np.zeros(3), np.zeros(3), k, d)
    np.testing.assert_allclose(uv.reshape(-1, 2), np.stack([xs, ys], -1).reshape(-1, 2), atol=1e-3)
    assert np.abs(ideal - np.stack([xs, ys], -1).reshape(-1, 2)).max() > 1.0, "the lens must move pixels"
    assert dmap.map_x.min() >= 0 and dmap.map_x.max() <= 128 + 2 * dmap.margin - 1


def _camera_k(size: int = 64, focal: float = 50.0) -> torch.Tensor:
    c = (size - 1) / 2
    return torch.tensor([[focal, 0.0, c], [0.0, focal, c], [0.0, 0.0, 1.0]])


def test_raycast_triangle_depth_mask_and_barycentrics() -> None:
    k = _camera_k()
    verts = torch.tensor([[-0.5, -0.5, 2.0], [0.5, -0.5, 2.0], [-0.5, 0.5, 2.0]])
    faces = torch.tensor([[0, 1, 2]])
    hits = raycast(verts, faces, k, 64, 64)
    # Projected corners: (19, 19), (44, 19), (19, 44); pixel (x, y) is inside iff x, y >= 19 and x + y <= 63.
    ys, xs = np.mgrid[0:64, 0:64]
    expected = (xs >= 18.999) & (ys >= 18.999) & (xs + ys <= 63.001)
    np.testing.assert_array_equal(hits.mask.numpy(), expected)
    assert torch.allclose(hits.depth[hits.mask], torch.tensor(2.0))
    assert torch.all(hits.depth[~hits.mask] == 0) and torch.all(hits.triangle[~hits.mask] == -1)
    assert torch.allclose(hits.barycentric[hits.mask].sum(-1), torch.tensor(1.0))
    centre = hits.barycentric[19, 19]
    assert torch.allclose(centre, torch.tensor([1.0, 0.0, 0.0]), atol=1e-5)
    assert torch.allclose(hits.normal[hits.mask], torch.tensor([0.0, 0.0, -1.0]))
    culled = raycast(verts, faces, k, 64, 64, cull_backfaces=True)
    front = raycast(verts, faces[:, [0, 2, 1]], k, 64, 64, cull_backfaces=True)
    assert culled.mask.sum() + front.mask.sum() == hits.mask.sum()


def test_raycast_cube_keeps_the_nearest_face() -> None:
    corners = torch.tensor([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    faces = torch.tensor([t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))])
    verts = corners + torch.tensor([0.0, 0.0, 3.0])
    k = _camera_k(128, 100.0)
    for chunk in (1 << 22, 64):
        hits = raycast(verts, faces, k, 128, 128, max_pairs=chunk)
        # The front face (z = 2.5) spans 0.5 * 100 / 2.5 = 20 px either side of the centre.
        assert torch.allclose(hits.depth[hits.mask], torch.tensor(2.5))
        ys, xs = np.nonzero(hits.mask.numpy())
        assert xs.min() == 44 and xs.max() == 83 and ys.min() == 44 and ys.max() == 83
        assert int(hits.mask.sum()) == 40 * 40
        assert torch.allclose(hits.normal[64, 64], torch.tensor([0.0, 0.0, -1.0]))


def test_cli_help_lists_options(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    from nerfstudio_humanfeat.scripts import synth

    monkeypatch.setattr("sys.argv", ["ns-humanfeat-synth", "--help"])
    with pytest.raises(SystemExit) as exit_info:
        synth.entrypoint()
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--preset", "--output-dir", "--seed", "--num-subjects", "--num-frames", "--num-cameras",
                   "--resolution", "--overwrite", "--background {black,dome}"):  # fmt: skip
        assert option in text


def small_spec(background: str, seed: int = 0, resolution: int = 64):
    return make_spec(
        "tiny", seed=seed, num_subjects=1, num_frames=1, num_cameras=4, resolution=resolution, background=background
    )


@pytest.fixture(scope="module")
def backgrounds(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    """Roots of the same small dataset (seed 0) generated with each background."""
    roots = {}
    for background in BACKGROUNDS:
        roots[background] = tmp_path_factory.mktemp(f"synth_{background}")
        generate(small_spec(background), roots[background], progress=False)
    return roots


def relative_files(root: Path, suffix: str = "") -> list:
    return sorted(p.relative_to(root) for p in root.rglob(f"*{suffix}") if p.is_file())


def test_dome_background_is_bright_outside_the_mask(backgrounds: Dict[str, Path]) -> None:
    images = relative_files(backgrounds["dome"] / "synth_000", ".jpg")
    assert len(images) == 4
    for rel in images:
        mask = read_mask(backgrounds["black"] / "synth_000" / "mask" / rel.with_suffix(".png")) > 0
        outside = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)) == 0
        assert outside.mean() > 0.5
        black = cv2.imread(str(backgrounds["black"] / "synth_000" / rel))[outside] / 255.0
        dome = cv2.imread(str(backgrounds["dome"] / "synth_000" / rel))[outside] / 255.0
        assert black.mean() < 0.01, f"{rel}: black background"
        assert dome.mean() > 0.25, f"{rel}: dome background too dark ({dome.mean():.3f})"
        assert dome.std() > 0.05, f"{rel}: dome background is not textured"


def test_dome_changes_only_the_images(backgrounds: Dict[str, Path]) -> None:
    black, dome = backgrounds["black"], backgrounds["dome"]
    files = relative_files(black)
    assert files == relative_files(dome)
    for rel in files:
        if rel.suffix == ".npz":
            with np.load(black / rel) as a, np.load(dome / rel) as b:
                assert_same(dict(a), dict(b))
        elif rel.suffix == ".jpg":
            assert (black / rel).read_bytes() != (dome / rel).read_bytes(), rel
        else:
            assert (black / rel).read_bytes() == (dome / rel).read_bytes(), rel


def test_dome_is_deterministic(backgrounds: Dict[str, Path], tmp_path: Path) -> None:
    generate(small_spec("dome"), tmp_path, progress=False)
    images = relative_files(tmp_path, ".jpg")
    assert images == relative_files(backgrounds["dome"], ".jpg")
    for rel in images:
        assert (tmp_path / rel).read_bytes() == (backgrounds["dome"] / rel).read_bytes(), rel


def test_dome_keeps_the_body_pixels(tmp_path: Path) -> None:
    spec = small_spec("dome", resolution=96)
    body = build_body_model()
    smpl = load_smpl(body.save(tmp_path / "SMPL_NEUTRAL.pkl"))
    plan = plan_subject(spec, 0)
    verts = torch.from_numpy(animate(plan, spec, smpl, body.surface_vertex_mask()).vertices[0]).float()
    normals = vertex_normals(verts, torch.from_numpy(body.faces).long())
    renderers = [Renderer(body, plan, spec.supersample, background) for background in BACKGROUNDS]
    inside, same = 0, 0
    for camera in range(spec.num_cameras):
        black, dome = (renderer.render(verts, normals, camera) for renderer in renderers)
        np.testing.assert_array_equal(black.mask, dome.mask)
        np.testing.assert_array_equal(black.embedding, dome.embedding)
        assert np.all(dome.image >= black.image), "the background only adds light where the body does not cover"
        assert np.any(dome.image[~dome.mask] != black.image[~dome.mask])
        # Sub-pixel gaps between limbs let a few pixels well inside the mask see some background.
        interior = cv2.erode(black.mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        inside += int(interior.sum())
        same += int((dome.image == black.image).all(-1)[interior].sum())
    assert inside > 200 and same > 0.97 * inside, (same, inside)


def test_studio_is_the_same_from_every_camera() -> None:
    gen = torch.Generator().manual_seed(0)
    radius, angle = 4.0 * torch.rand(200, generator=gen).sqrt(), 2 * np.pi * torch.rand(200, generator=gen)
    floor = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle), torch.zeros(200)], -1)
    up = torch.nn.functional.normalize(torch.randn(200, 3, generator=gen).double(), dim=-1)
    up[:, 2] = up[:, 2].abs() + 0.05
    points = torch.cat([floor.double(), DOME_RADIUS * torch.nn.functional.normalize(up, dim=-1)])
    colours = []
    for origin in ([3.0, 0.0, 1.5], [-1.5, 2.5, 1.7], [0.3, -2.9, 1.4]):
        origin = torch.tensor(origin, dtype=torch.float64)
        colours.append(studio(origin, torch.nn.functional.normalize(points - origin, dim=-1)))
    for other in colours[1:]:
        torch.testing.assert_close(other, colours[0], atol=1e-4, rtol=0)
    floor_colour, dome_colour = colours[0][:200], colours[0][200:]
    assert floor_colour.mean() > 0.25 and dome_colour.mean() > 0.25
    assert floor_colour.std(0).min() > 0.02 and dome_colour.std(0).min() > 0.02, "textured"


def test_pixel_rays_project_back_to_their_pixels() -> None:
    k = _camera_k(32, 40.0).double()
    rot = torch.from_numpy(cv2.Rodrigues(np.array([0.3, -0.2, 0.1]))[0])
    trans = torch.tensor([0.2, -0.1, 3.0], dtype=torch.float64)
    origin, directions = pixel_rays(k, rot, trans, 24, 32)
    assert directions.shape == (24, 32, 3)
    torch.testing.assert_close(directions.norm(dim=-1), torch.ones(24, 32, dtype=torch.float64))
    torch.testing.assert_close(rot @ origin + trans, torch.zeros(3, dtype=torch.float64))
    points = (origin + 2.5 * directions) @ rot.T + trans
    pixels = points @ k.T
    ys, xs = torch.meshgrid(torch.arange(24.0), torch.arange(32.0), indexing="ij")
    torch.testing.assert_close(pixels[..., :2] / pixels[..., 2:], torch.stack([xs, ys], -1).double())


def test_bench_preset_defaults_to_dome() -> None:
    from nerfstudio_humanfeat.scripts import synth

    assert PRESETS["bench"].background == "dome" and make_spec("bench").background == "dome"
    assert PRESETS["tiny"].background == "black" and PRESETS["demo"].background == "black"
    assert make_spec("bench", background="black").background == "black"
    assert make_spec("tiny", background="dome").background == "dome"
    with pytest.raises(ValueError):
        make_spec("tiny", background="green")  # type: ignore[arg-type]
    assert tyro.cli(synth.SynthConfig, args=["--output-dir", "x"]).background is None
    assert tyro.cli(synth.SynthConfig, args=["--output-dir", "x", "--background", "dome"]).background == "dome"


def test_seen_test_motions_give_held_out_subjects_a_training_motion_and_nothing_else() -> None:
    from nerfstudio_humanfeat.scripts import synth

    for seed in range(5):
        anything = make_spec("demo", seed=seed, test_motions="any")
        seen = make_spec("demo", seed=seed, test_motions="seen")
        assert seen.test_motions == "seen" and anything.test_motions == "any"
        plans = {name: [plan_subject(spec, i) for i in range(spec.num_subjects)] for name, spec in
                 (("any", anything), ("seen", seen))}  # fmt: skip
        train = {p.motion for p in plans["seen"] if p.split == "train"}
        assert all(p.motion in train for p in plans["seen"] if p.split == "test")
        for before, after in zip(plans["any"], plans["seen"]):
            if before.split == "train" or before.motion in train:
                assert after.motion == before.motion  # only an unseen held-out motion moves
            np.testing.assert_array_equal(before.betas, after.betas)  # the same people
    assert {p.motion for p in [plan_subject(make_spec("demo", test_motions="any"), i) for i in (4, 5)]} == {
        "jumping_jack",
        "walk",
    }  # the held-out jumping jack of seed 0 that no training subject does
    assert all(make_spec(preset).test_motions == "any" for preset in ("tiny", "demo", "bench"))
    assert tyro.cli(synth.SynthConfig, args=["--output-dir", "x", "--test-motions", "any"]).test_motions == "any"


def test_an_interrupted_generation_leaves_the_output_folder_as_it_was(tmp_path, monkeypatch):
    from nerfstudio_humanfeat.synth import generator

    spec = generator.make_spec("tiny", seed=0, num_subjects=2, num_frames=1, num_cameras=2, resolution=32)
    render = generator.Renderer.render
    calls = []

    def interrupted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # the second subject's first view
            raise KeyboardInterrupt
        return render(self, *args, **kwargs)

    monkeypatch.setattr(generator.Renderer, "render", interrupted)
    output = tmp_path / "data"
    with pytest.raises(KeyboardInterrupt):
        generator.generate(spec, output, progress=False)
    assert not output.exists() or not any(output.iterdir())
    monkeypatch.setattr(generator.Renderer, "render", render)
    summary = generator.generate(spec, output, progress=False)
    assert summary.root == output
    assert sorted(p.name for p in output.iterdir()) == ["body_model", "splits.json", "synth_000", "synth_001"]
    assert not list(tmp_path.glob(".*partial"))
    with pytest.raises(FileExistsError, match="--overwrite"):
        generator.generate(spec, output, progress=False)
