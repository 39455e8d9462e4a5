"""ns-humanfeat-process: calibration readers, BlazePose -> BODY_25, and a synthetic capture processed end to end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from nerfstudio_humanfeat.capture.body25 import BLAZEPOSE_NAMES, MAPPED_JOINTS, body25_from_blazepose
from nerfstudio_humanfeat.capture.calibration import read_calibration
from nerfstudio_humanfeat.capture.estimator import mediapipe_available
from nerfstudio_humanfeat.data.zju_io import load_annots, read_keypoints3d_json, read_mask
from nerfstudio_humanfeat.skeleton import BODY25_NAMES

BIN = Path(sys.executable).parent
KEYPOINT_ERROR_MM = 90.0
"""Bound on the mean distance of triangulated 3D keypoints to the generator's (measured about 57 mm: BlazePose's
hips, knees and feet are not SMPL's joints and surface points, several centimetres of systematic difference)."""
MASK_IOU = 0.85
"""Bound on the mean IoU of the segmenter's masks with the generator's."""
HAS_MEDIAPIPE = mediapipe_available()
needs_mediapipe = pytest.mark.skipif(
    not HAS_MEDIAPIPE, reason="mediapipe 0.10.14 is not installed: pip install --no-deps mediapipe==0.10.14 flatbuffers"
)


def write_capture(sequence: Path, out: Path) -> Path:
    """A plain multi-view folder (images/<camera>/<frame>.jpg) and a nerfstudio transforms.json made from a
    generated sequence; nothing else of the generator's (masks, keypoints, SMPL) is copied."""
    annots = load_annots(sequence / "annots.npy")
    frames = []
    for entry in annots.ims:
        for camera, rel in enumerate(entry):
            target = out / "images" / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(sequence / rel, target)
            c2w = np.eye(4)
            c2w[:3, :3] = annots.R[camera].T @ np.diag([1.0, -1.0, -1.0])
            c2w[:3, 3] = -annots.R[camera].T @ annots.T[camera]
            K, D = annots.K[camera], annots.D[camera]
            frames.append(
                {
                    "file_path": f"images/{rel}",
                    "transform_matrix": c2w.tolist(),
                    "fl_x": K[0, 0],
                    "fl_y": K[1, 1],
                    "cx": K[0, 2] + 0.5,
                    "cy": K[1, 2] + 0.5,
                    **dict(zip(("k1", "k2", "p1", "p2"), D[:4].tolist())),
                }
            )
    path = out / "transforms.json"
    path.write_text(json.dumps({"camera_model": "OPENCV", "frames": frames}), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------ without mediapipe


def test_body25_mapping() -> None:
    landmarks = np.stack([np.arange(33, dtype=float) * 10, np.arange(33, dtype=float), np.full(33, 0.9)], -1)
    landmarks[BLAZEPOSE_NAMES.index("left_knee"), 2] = 0.05  # low visibility: missing
    out = body25_from_blazepose(landmarks, min_confidence=0.1)
    index = BODY25_NAMES.index
    assert out[index("Nose")].tolist() == pytest.approx([0, 0, 0.9])
    ls, rs = BLAZEPOSE_NAMES.index("left_shoulder"), BLAZEPOSE_NAMES.index("right_shoulder")
    assert out[index("Neck"), :2].tolist() == pytest.approx(((landmarks[ls, :2] + landmarks[rs, :2]) / 2).tolist())
    lh, rh = BLAZEPOSE_NAMES.index("left_hip"), BLAZEPOSE_NAMES.index("right_hip")
    assert out[index("MidHip"), 0] == pytest.approx((landmarks[lh, 0] + landmarks[rh, 0]) / 2)
    assert out[index("RWrist"), 0] == pytest.approx(landmarks[BLAZEPOSE_NAMES.index("right_wrist"), 0])
    assert out[index("LHeel"), 0] == pytest.approx(landmarks[BLAZEPOSE_NAMES.index("left_heel"), 0])
    for missing in ("LSmallToe", "RSmallToe", "LKnee"):
        assert out[index(missing), 2] == 0 and np.isnan(out[index(missing), :2]).all()  # never (0, 0)
    assert len(MAPPED_JOINTS) == 23


def _camera_pose(rng: np.random.Generator):
    from nerfstudio_humanfeat.synth.generator import look_at

    eye = np.array([*rng.uniform(-3, 3, 2), 1.5])
    R = look_at(eye, np.array([0.0, 0.0, 1.0]))
    return R, -R @ eye


def test_transforms_json_reader(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    R, T = _camera_pose(rng)
    c2w = np.eye(4)
    c2w[:3, :3], c2w[:3, 3] = R.T @ np.diag([1.0, -1.0, -1.0]), -R.T @ T
    frame = {"file_path": "images/cam_a/0001.png", "transform_matrix": c2w.tolist(), "k1": 0.01, "p2": -0.001}
    data = {"fl_x": 500.0, "fl_y": 501.0, "cx": 320.0, "cy": 240.0, "w": 640, "h": 480, "frames": [frame]}
    (tmp_path / "transforms.json").write_text(json.dumps(data))
    cal = read_calibration(tmp_path / "transforms.json")
    assert cal.names == ["cam_a"] and cal.sizes == [(480, 640)]
    np.testing.assert_allclose(cal.R[0], R, atol=1e-9)
    np.testing.assert_allclose(cal.T[0], T, atol=1e-9)
    np.testing.assert_allclose(cal.K[0], [[500, 0, 319.5], [0, 501, 239.5], [0, 0, 1]])
    np.testing.assert_allclose(cal.D[0], [0.01, 0, 0, -0.001, 0])


def test_colmap_text_reader(tmp_path: Path) -> None:
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(1)
    (R0, T0), (R1, T1) = _camera_pose(rng), _camera_pose(rng)
    (tmp_path / "cameras.txt").write_text(
        "# Camera list\n1 OPENCV 640 480 500 501 320 240 0.01 0.002 0 0\n2 PINHOLE 640 480 450 450 320.5 240.5\n"
    )
    lines = ["# Image list", "# IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME"]
    for i, (R, T, cam, name) in enumerate(((R0, T0, 1, "left/0001.jpg"), (R1, T1, 2, "right/0001.jpg"))):
        qx, qy, qz, qw = Rotation.from_matrix(R).as_quat()
        lines += [f"{i + 1} {qw} {qx} {qy} {qz} {T[0]} {T[1]} {T[2]} {cam} {name}", ""]
    (tmp_path / "images.txt").write_text("\n".join(lines) + "\n")
    cal = read_calibration(tmp_path)
    assert cal.names == ["left", "right"] and cal.sizes == [(480, 640), (480, 640)]
    np.testing.assert_allclose(cal.R, [R0, R1], atol=1e-9)
    np.testing.assert_allclose(cal.T, [T0, T1], atol=1e-9)
    np.testing.assert_allclose(cal.K[1], [[450, 0, 320], [0, 450, 240], [0, 0, 1]])
    np.testing.assert_allclose(cal.D[0], [0.01, 0.002, 0, 0, 0])


def test_annots_reader_matches_transforms(tmp_path: Path, tiny_dataset: Path) -> None:
    sequence = tiny_dataset / "synth_000"
    from_annots = read_calibration(sequence / "annots.npy")
    from_json = read_calibration(write_capture(sequence, tmp_path))
    assert from_annots.names == from_json.names
    for key in "KDRT":
        np.testing.assert_allclose(getattr(from_json, key), getattr(from_annots, key), atol=1e-7)


def test_missing_mediapipe_message(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    from nerfstudio_humanfeat.capture import estimator

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("mediapipe"):
            raise ImportError(f"No module named '{name}'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(estimator.EstimatorUnavailable, match=r"nerfstudio-humanfeat\[capture\]"):
        estimator.make_estimator("mediapipe")


# ---------------------------------------------------------------------------------------- with mediapipe


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory):
    """(generated dataset, processed root, summary) for one synthetic subject seen by 8 cameras over 2 frames, at
    256 px: at the preset's 96 px the detector misses about half of the views (the person is ~60 px tall)."""
    if not HAS_MEDIAPIPE:
        pytest.skip("mediapipe 0.10.14 is not installed: pip install --no-deps mediapipe==0.10.14 flatbuffers")
    from nerfstudio_humanfeat.capture.estimator import make_estimator
    from nerfstudio_humanfeat.capture.pipeline import process_capture
    from nerfstudio_humanfeat.synth.generator import generate, make_spec

    work = tmp_path_factory.mktemp("capture")
    generate(
        make_spec("tiny", seed=3, num_subjects=1, num_test_subjects=0, resolution=256), work / "synth", progress=False
    )
    transforms = write_capture(work / "synth" / "synth_000", work / "capture")
    estimator = make_estimator()
    start = time.perf_counter()
    summary = process_capture(
        work / "capture" / "images", transforms, work / "out", estimator, name="capture", progress=False
    )
    summary.wall_seconds = time.perf_counter() - start
    estimator.close()
    return work / "synth" / "synth_000", work / "out", summary


@needs_mediapipe
def test_processed_keypoints_and_masks(processed) -> None:
    truth, out, summary = processed
    sequence = out / "capture"
    errors, ious = [], []
    for stem in ("000000", "000001"):
        gt = read_keypoints3d_json(truth / "keypoints3d" / f"{stem}.json")
        pred = read_keypoints3d_json(sequence / "keypoints3d" / f"{stem}.json")
        both = (gt[:, 3] > 0) & (pred[:, 3] > 0)
        assert both.sum() >= 20, f"frame {stem}: only {both.sum()} joints triangulated"
        errors.append(np.linalg.norm(pred[both, :3] - gt[both, :3], axis=-1))
        for camera in sorted(p.name for p in (truth / "mask").iterdir()):
            true = read_mask(truth / "mask" / camera / f"{stem}.png")
            mask = read_mask(sequence / "mask" / camera / f"{stem}.png")
            ious.append((true & mask).sum() / max((true | mask).sum(), 1))
    error_mm = 1000 * float(np.concatenate(errors).mean())
    print(
        f"\nprocess figures: 3D keypoint error {error_mm:.1f} mm (mean over {sum(len(e) for e in errors)} joints), "
        f"mask IoU {np.mean(ious):.3f} (min {np.min(ious):.3f}; note the generator's masks are of the distorted "
        f"image, ours of the undistorted one), {1000 * summary.seconds_per_image:.0f} ms per image "
        f"(estimator), mask sources {summary.mask_sources}, views without person {summary.missed_views}"
    )
    assert error_mm < KEYPOINT_ERROR_MM
    assert np.mean(ious) > MASK_IOU


@needs_mediapipe
def test_processed_dataset_is_accepted(processed) -> None:
    _, out, _ = processed
    annots = load_annots(out / "capture" / "annots.npy")
    assert annots.num_cameras == 8 and annots.num_frames == 2 and not annots.D.any()
    assert json.loads((out / "splits.json").read_text())["train_subjects"] == ["capture"]
    result = subprocess.run(
        [str(BIN / "ns-humanfeat-inspect"), "--data", str(out)], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _ns_train(method: str, data: Path, work: Path, *model_flags: str) -> subprocess.CompletedProcess:
    args = [str(BIN / "ns-train"), f"{method}-cpu", "--data", str(data), "--output-dir", str(work)]
    args += ["--timestamp", "run", "--max-num-iterations", "2", "--vis", "tensorboard"]
    args += ["--viewer.quit-on-train-completion", "True", *model_flags]
    args += ["--pipeline.datamanager.train-num-rays-per-batch", "64", "zju-mocap"]
    args += ["--pipeline.datamanager.dataparser.eval-subjects", "train"]  # the capture is the only subject
    args += ["--pipeline.datamanager.dataparser.eval-max-views", "1"]
    return subprocess.run(args, capture_output=True, text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})


@needs_mediapipe
def test_methods_with_a_body_model_refuse_the_capture_and_the_others_train_on_it(processed, tmp_path: Path) -> None:
    _, out, _ = processed
    for method, model in (("anipixel", "AniPixelModel"), ("keypointnerf", "KeypointNeRFModel")):
        refused = _ns_train(method, out, tmp_path)
        assert refused.returncode != 0
        message = refused.stdout + refused.stderr
        assert f"{model} poses an SMPL fit per frame" in message and str(out / "capture") in message
        assert "params/<i>.npy" in message and not list(tmp_path.glob("**/*.ckpt"))
    assert "--pipeline.model.keypoints triangulated" in message
    for method, flags in (("ghnerf", ()), ("keypointnerf", ("--pipeline.model.keypoints", "triangulated"))):
        trained = _ns_train(method, out, tmp_path, *flags)
        assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-3000:]
        assert list(tmp_path.glob(f"**/{method}-cpu/run/nerfstudio_models/step-000000001.ckpt"))


@needs_mediapipe
def test_pose_baseline_scores_the_estimator_on_ground_truth_images(processed) -> None:
    """GHNeRF Table 3's baseline: the estimator on ground-truth images of the generated subject finds the person,
    and a PCK computed on the estimator's joints only (the small toes excluded) is high; a wrong image scores low."""
    import torch

    from nerfstudio_humanfeat.data.dataparsers.zju_mocap_dataparser import ZJUMocapDataParserConfig
    from nerfstudio_humanfeat.pose_baseline import make_pose_baseline

    truth, _, _ = processed
    outputs = ZJUMocapDataParserConfig(data=truth.parent, eval_subjects="train").setup()
    catalog = outputs.get_dataparser_outputs("train").metadata["catalog"]
    baseline, label = make_pose_baseline("mediapipe")
    assert baseline is not None and "mediapipe" in label
    assert not baseline.joints[BODY25_NAMES.index("LSmallToe")] and int(baseline.joints.sum()) == len(MAPPED_JOINTS)
    scores = []
    for camera in (0, 2, 4):
        view = catalog.load_view(0, camera)
        metrics = baseline((0, camera), view.image, view.keypoints2d)
        assert metrics["baseline_detected"] == 1.0
        assert metrics == baseline((0, camera), torch.zeros(1, 1, 3), view.keypoints2d)  # cached per view
        scores.append(metrics["baseline_pck"])
    print(f"\npose baseline PCK@0.2 on ground-truth views: {[round(s, 3) for s in scores]}")
    assert np.mean(scores) >= 0.6
    view = catalog.load_view(0, 0)
    flipped = view.image.flip(0)  # upside down: the keypoints cannot match
    assert (baseline((0, 99), flipped, view.keypoints2d)["baseline_pck"] or 0.0) < 0.5
