"""The learning benchmark's pieces: overfitting flags parse through ns-train's CLI, checkpoint times, the report."""

from __future__ import annotations

import os
from pathlib import Path

import tyro
from nerfstudio.configs.method_configs import AnnotatedBaseConfigUnion

from nerfstudio_humanfeat.configs.cli import with_dataparser
from nerfstudio_humanfeat.scripts.learning_bench import (
    LearningBench,
    checkpoint_minutes,
    first_reaching,
    overfit_flags,
)


def test_overfit_flags_select_one_frame_of_one_subject_evaluated_on_itself(tiny_dataset: Path):
    args = with_dataparser(["enerf-heatmap", "--data", str(tiny_dataset), *overfit_flags("synth_000", 8)])
    config = tyro.cli(AnnotatedBaseConfigUnion, args=args)
    config.pipeline.datamanager.dataparser.data = tiny_dataset
    parser = config.pipeline.datamanager.dataparser.setup()
    train, test = parser.get_dataparser_outputs("train"), parser.get_dataparser_outputs("test")
    views = train.metadata["views"]
    assert {parser.catalog.subject(key).name for key, _ in views} == {"synth_000"}
    assert sorted(camera for _, camera in views) == list(range(8))  # every camera a target
    assert {parser.catalog.frame(key).frame_id for key, _ in views} == {0}
    assert test.metadata["views"] == views  # evaluated on its own views
    assert parser.catalog.subject(views[0][0]).source_cameras == list(range(8))


def test_checkpoint_minutes_count_from_the_config_and_the_first_checkpoint_reaching_a_target(tmp_path: Path):
    config = tmp_path / "config.yml"
    config.write_text("")
    models = tmp_path / "nerfstudio_models"
    models.mkdir()
    start = config.stat().st_mtime
    for step, seconds in ((100, 30.0), (200, 90.0)):
        path = models / f"step-{step:09d}.ckpt"
        path.write_text("")
        os.utime(path, (start + seconds, start + seconds))
    assert checkpoint_minutes(config) == {100: 0.5, 200: 1.5}
    curve = [(100, 0.5, {"psnr": 28.0}), (200, 1.5, {"psnr": 31.0}), (300, 2.5, {"psnr": 32.0})]
    assert first_reaching(curve, "psnr", 30.0) == curve[1] and first_reaching(curve, "psnr", 40.0) is None


def test_report_tables_hold_the_figures_of_the_curves():
    bench = LearningBench(methods=("ghnerf",), minutes=2.0, overfit_minutes=1.0)
    results = {
        "overfit": {"ghnerf": [(100, 0.4, {"psnr": 29.0}), (200, 0.9, {"psnr": 30.5})]},
        "generalise-demo": {"ghnerf": [(200, 1.9, {"psnr": 25.25, "ssim": 0.875, "pck": 0.5, "mpjpe_mm": None})]},
    }
    report = bench.report(results, seconds=120.0)
    assert "| GHNeRF+ResNet34 | 200 | 0.9 | 30.50 | 200 |" in report
    assert "| GHNeRF+ResNet34 | 1.9 | 200 | 25.25 | 0.875 | 0.500 | – | – |" in report
    assert "(paper)" in report and "ZJU-MoCap real captures" in report
    assert "per held-out subject" not in report  # no subject keys, no table


def test_report_lists_each_held_out_subject_at_the_last_checkpoint():
    bench = LearningBench(methods=("ghnerf", "enerf-heatmap"))
    first = {"subject/synth_004/pck": 0.1, "subject/synth_004/psnr": 20.0}
    last = {"subject/synth_004/pck": 0.6, "subject/synth_004/psnr": 27.5, "subject/synth_005/pck": 0.2}
    runs = {"ghnerf": [(100, 1.0, first), (200, 2.0, last)], "enerf-heatmap": [(200, 2.0, {"psnr": 24.0})]}
    report = bench.report({"generalise-demo": runs}, seconds=60.0)
    assert "| Method | synth_004 | synth_005 |" in report
    assert "| GHNeRF+ResNet34 | 0.600 / 27.50 | 0.200 / – |" in report
    assert "| ENeRF+Heatmap | – / – | – / – |" in report
