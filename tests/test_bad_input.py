"""Bad inputs that the other test files do not already make (docs/bad_input.md lists them all): each error names the
file and what was expected."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from zju_fixtures import SequenceSpec, SequenceTruth, look_at, rewrite_annots, write_dataset

from nerfstudio_humanfeat.body.smpl import SMPL_MODEL_ENV, resolve_smpl_model
from nerfstudio_humanfeat.data import h36m_io
from nerfstudio_humanfeat.data import renderpeople_io as rp
from nerfstudio_humanfeat.data.catalog import HumanDataError
from nerfstudio_humanfeat.data.dataparsers.zju_mocap_dataparser import ZJUMocapDataParserConfig
from nerfstudio_humanfeat.pipelines.human_pipeline import CheckpointMismatchError
from nerfstudio_humanfeat.scripts.inspect import InspectConfig
from nerfstudio_humanfeat.scripts.inspect import main as inspect_main


@pytest.fixture
def good(tmp_path) -> SequenceTruth:
    return write_dataset(tmp_path, [SequenceSpec(name="CoreView_377")])["CoreView_377"]


def parse(root: Path, **kwargs):
    return ZJUMocapDataParserConfig(data=root, **kwargs).setup().catalog


def naming(path: Path, *expected: str, error=HumanDataError):
    """pytest.raises whose message names `path`, then each expected text in order."""
    return pytest.raises(error, match=re.escape(str(path)) + "".join(f".*{re.escape(e)}" for e in expected))


# ----------------------------------------------------------------------------------- annots.npy cameras


def test_singular_intrinsics(good):
    rewrite_annots(good.root, lambda a: a["cams"]["K"][1].__setitem__(2, [0.0, 0.0, 0.0]))
    with naming(good.root / "annots.npy", "cams['K'][1] is not an intrinsic matrix", "expected [[fx, s, cx]"):
        parse(good.root.parent)


def test_translation_in_metres(good):
    rewrite_annots(good.root, lambda a: a["cams"].update(T=[t / 1000.0 for t in a["cams"]["T"]]))
    with naming(good.root / "annots.npy", "T must be in millimetres", "look like metres"):
        parse(good.root.parent)


def test_duplicated_camera(good):
    def copy_camera(annots):
        for key in "KDRT":
            annots["cams"][key][2] = annots["cams"][key][0].copy()

    rewrite_annots(good.root, copy_camera)
    with naming(good.root / "annots.npy", "cameras 0 and 2 have the same pose", "expected one calibration"):
        parse(good.root.parent)


def test_empty_ims(good):
    rewrite_annots(good.root, lambda a: a.update(ims=[]))
    with naming(good.root / "annots.npy", "'ims' lists no frame"):
        parse(good.root.parent)


# ------------------------------------------------------------------------------------------- SMPL files


@pytest.mark.parametrize(
    "change,expected",
    [
        (lambda p: p.update(poses=np.zeros((1, 69))), "SMPL 'poses' has 69 values, expected 72"),
        (lambda p: p.update(shapes=np.zeros((1, 300))), "SMPL 'shapes' has 300 values, expected 10"),
        (lambda p: p.pop("Th"), "SMPL parameters lack 'Th'"),
    ],
)
def test_smpl_parameters_of_the_wrong_shape(good, change, expected):
    path = good.root / "params" / "1.npy"
    params = np.load(path, allow_pickle=True).item()
    change(params)
    np.save(path, params)
    with naming(path, expected):
        parse(good.root.parent)


def test_missing_smpl_model(tmp_path, monkeypatch):
    monkeypatch.setenv(SMPL_MODEL_ENV, str(tmp_path / "deleted" / "SMPL_NEUTRAL.pkl"))
    with naming(tmp_path / "deleted" / "SMPL_NEUTRAL.pkl", "body_model/SMPL_NEUTRAL.pkl", error=FileNotFoundError):
        resolve_smpl_model(None, tmp_path)


# ------------------------------------------------------------------------------------------- keypoints


def test_annotated_keypoints_outside_the_image(good):
    rewrite_annots(good.root, lambda a: a["ims"][1]["kpts2d"][3, :, :2].__imul__(4.0))  # another resolution
    with naming(good.root / "annots.npy", "ims[1]['kpts2d'] camera 3", "outside the 64x64 image", "expected pixel"):
        parse(good.root.parent)


def test_openpose_keypoints_outside_the_image(tmp_path):
    truth = write_dataset(tmp_path, [SequenceSpec(keypoints=("openpose",))])["CoreView_377"]
    path = (truth.root / "keypoints2d" / truth.image_rel[2][0]).with_suffix(".json")
    data = json.loads(path.read_text())
    values = np.asarray(data["people"][0]["pose_keypoints_2d"]).reshape(25, 3)
    values[values[:, 2] > 0, 1] -= 100.0
    data["people"][0]["pose_keypoints_2d"] = values.ravel().tolist()
    path.write_text(json.dumps(data))
    with naming(path, "outside the 64x64 image", "expected pixel coordinates of this image"):
        parse(tmp_path)


# ----------------------------------------------------------------------------------------------- masks


def test_mask_without_a_person_warns(good, capsys):
    paths = [(good.root / folder / good.image_rel[1][3]).with_suffix(".png") for folder in ("mask", "mask_cihp")]
    for path in paths:
        cv2.imwrite(str(path), np.zeros((64, 64), np.uint8))
    catalog = parse(good.root.parent)
    capsys.readouterr()
    assert not catalog.load_view(1, 3).mask.any()
    out = capsys.readouterr().out
    assert f"{paths[0]}, {paths[1]}: mask has no foreground pixel (expected the person's silhouette)" in out
    assert inspect_main(InspectConfig(data=good.root.parent)) == 0  # legitimate (person out of view): a warning


# ------------------------------------------------------------------------------------ splits and options


@pytest.mark.parametrize(
    "text,expected",
    [
        ("{not json", "cannot read the split file (expected a JSON object with train_subjects"),
        ('["CoreView_377"]', "expected a JSON object with train_subjects and test_subjects"),
        ('{"train_subjects": "CoreView_377"}', "'train_subjects' must be a list, found str"),
        ('{"train_subjects": ["CoreView_377"], "frames": [0, 10]}', "'frames' must be an object with start"),
        ('{"train_subjects": ["CoreView_377"], "mask_dilation": -1}', "'mask_dilation' must be a whole number"),
    ],
)
def test_bad_splits_json(good, text, expected):
    path = good.root.parent / "splits.json"
    path.write_text(text)
    with naming(path, expected):
        parse(good.root.parent)


def test_bad_frame_and_scale_options(good):
    with pytest.raises(HumanDataError, match=re.escape("invalid frame range (--frame-start/--frame-stride")):
        parse(good.root.parent, frame_stride=0)
    with naming(good.root / "annots.npy", "image_scale (--image-scale) must be positive, got -0.5"):
        parse(good.root.parent, image_scale=-0.5)


# --------------------------------------------------------------------------------- Human3.6M, RenderPeople


def test_h36m_missing_blend_weights(tmp_path):
    lbs = tmp_path / "S9" / "Posing" / "lbs"
    (lbs / "bweights").mkdir(parents=True)
    for name, array in (("joints", np.zeros((24, 3))), ("parents", np.zeros(24, int)), ("tvertices", np.zeros((8, 3)))):
        np.save(lbs / f"{name}.npy", array)
    np.save(lbs / "tbw.npy", np.zeros((2, 2, 2, 25)))
    np.save(lbs / "bweights" / "0.npy", np.zeros((2, 2, 2, 25)))
    with naming(lbs / "bweights" / "1.npy", "blend-weight grid of frame 1 not found"):
        h36m_io.check_lbs(lbs.parent, [0, 1])


def write_rp_cameras(subject: Path, num: int, scale: float = 1.0, drop: str = "") -> Path:
    """A RenderPeople subject's img/camera folders and cameras.json (T times `scale`, without camera `drop`)."""
    cameras = {}
    for c in range(num):
        angle = 2 * np.pi * c / num
        R, T = look_at(np.array([3 * np.cos(angle), 3 * np.sin(angle), 1.0]), np.array([0.0, 0.0, 0.9]))
        name = f"camera{c:04d}"
        (subject / "img" / name).mkdir(parents=True, exist_ok=True)
        K = [[50.0, 0, 32], [0, 50.0, 32], [0, 0, 1]]
        if name != drop:
            cameras[name] = {"K": K, "R": R.tolist(), "T": (T * scale).tolist()}
    (subject / rp.CAMERAS_FILE).write_text(json.dumps(cameras))
    return subject / rp.CAMERAS_FILE


def test_renderpeople_cameras_json_missing_a_camera(tmp_path):
    path = write_rp_cameras(tmp_path / "subject_a", 4, drop="camera0002")
    problem = rp.check_camera_count(tmp_path / "subject_a", rp.read_cameras_json(path))
    assert problem is not None
    assert str(problem).startswith(f"{path}: camera count mismatch: cameras.json lists 3 cameras")
    assert "only in img/: ['camera0002']" in str(problem)


def test_renderpeople_translation_in_millimetres(tmp_path):
    path = write_rp_cameras(tmp_path / "subject_a", 4, scale=1000.0)
    with naming(path, "camera camera0000 lies 3", "T must be in metres", "look like millimetres"):
        rp.read_cameras_json(path)


def test_renderpeople_duplicated_camera(tmp_path):
    path = write_rp_cameras(tmp_path / "subject_a", 4)
    cameras = json.loads(path.read_text())
    cameras["camera0003"] = cameras["camera0001"]
    path.write_text(json.dumps(cameras))
    with naming(path, "cameras camera0001 and camera0003 have the same pose"):
        rp.read_cameras_json(path)


# ------------------------------------------------------------------------------------- saved runs (ns-eval)


def save_run(method: str, data: Path, output: Path):
    """config.yml of a run of `method` on `data` (as ns-train writes it) and its checkpoint folder."""
    from nerfstudio.plugins.registry import discover_methods  # imports every method: only where needed

    config = copy.deepcopy(discover_methods()[0][method])
    config.pipeline.datamanager.data = data
    config.output_dir, config.experiment_name, config.timestamp = output, "bad", "run"
    config.save_config()
    config.get_checkpoint_dir().mkdir(parents=True, exist_ok=True)
    return config


def test_config_pointing_at_a_deleted_dataset(tmp_path):
    from nerfstudio.utils.eval_utils import eval_setup

    config = save_run("enerf-heatmap", tmp_path / "deleted_dataset", tmp_path / "outputs")
    with naming(tmp_path / "deleted_dataset", "data root not found (expected a folder of ZJU-MoCap sequences)"):
        eval_setup(config.get_base_dir() / "config.yml", test_mode="test")


def test_checkpoint_of_another_method(tmp_path):
    from nerfstudio.utils.eval_utils import eval_setup

    data = tmp_path / "data"
    write_dataset(
        data, [SequenceSpec(name="CoreView_377", num_frames=1), SequenceSpec(name="CoreView_313", num_frames=1)]
    )
    enerf = save_run("enerf-heatmap", data, tmp_path / "outputs")
    _, pipeline, _, _ = _eval_setup_without_checkpoint(enerf)
    ghnerf = save_run("ghnerf", data, tmp_path / "outputs")
    path = ghnerf.get_checkpoint_dir() / "step-000000007.ckpt"
    torch.save({"step": 7, "pipeline": pipeline.state_dict()}, path)  # an ENeRF checkpoint in a GHNeRF run
    with naming(
        path, "the checkpoint (step 7) does not hold the weights of GHNeRFModel", error=CheckpointMismatchError
    ):
        eval_setup(ghnerf.get_base_dir() / "config.yml", test_mode="test")


def test_fewer_source_cameras_than_a_render_needs(tmp_path):
    data = tmp_path / "data"
    write_dataset(
        data, [SequenceSpec(name="CoreView_377", num_frames=1), SequenceSpec(name="CoreView_313", num_frames=1)]
    )
    config = save_run("enerf-heatmap", data, tmp_path / "outputs")
    config.pipeline.datamanager.dataparser.source_cameras = (0,)
    with pytest.raises(HumanDataError, match=r"num_source_views=2 .*CoreView_313: \[0\].*num-source-views"):
        config.pipeline.setup(device="cpu", test_mode="test")


def _eval_setup_without_checkpoint(config):
    """The pipeline that ns-eval sets up for a config (no checkpoint loaded)."""
    return None, config.pipeline.setup(device="cpu", test_mode="test"), None, 0


def test_keypoint_exporter_options_out_of_range(good):
    from types import SimpleNamespace

    from nerfstudio_humanfeat.scripts.export_keypoints import ExportKeypoints

    model = SimpleNamespace(catalog=parse(good.root.parent, subjects_train=("CoreView_377",)))
    subject = model.catalog.subjects[0]
    config = Path("outputs/demo/ghnerf/run/config.yml")
    cases = [
        (lambda: ExportKeypoints(config, subjects=["CoreView_999"]).chosen_subjects(model), "(--subjects)"),
        (lambda: ExportKeypoints(config, frames=[0, 7]).frame_indices(subject), "expected indices 0..2"),
        (lambda: ExportKeypoints(config, cameras=[4]).camera_indices(subject), "expected indices 0..3"),
    ]
    for call, expected in cases:
        with pytest.raises(SystemExit, match=re.escape(str(config)) + ".*" + re.escape(expected)):
            call()
