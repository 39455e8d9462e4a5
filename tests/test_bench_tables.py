"""ns-humanfeat-bench's tables: GHNeRF Table 1's layout and Table 3's pose-estimator baseline, from ns-eval figures."""

from __future__ import annotations

from nerfstudio_humanfeat.pose_baseline import BASELINE_LABEL
from nerfstudio_humanfeat.scripts.bench import MethodResult, markdown_table, novel_pose_table, pose_baseline_table


def _result(method: str, **metrics: object) -> MethodResult:
    return MethodResult(method=method, curve=[(100, {"psnr": 20.0}), (200, dict(metrics))], train_seconds=90.0)


def test_table_1_rows_hold_each_methods_last_checkpoint() -> None:
    table = markdown_table([_result("ghnerf", psnr=27.354, pck=0.4), _result("enerf-heatmap", psnr=26.0, lpips=None)])
    ghnerf, enerf = table.splitlines()[2:]
    assert "27.35" in ghnerf and "0.400" in ghnerf and "| 200 | 1.5 |" in ghnerf
    assert "26.00" in enerf and "–" in enerf  # lpips unavailable


def test_pose_baseline_table_names_the_estimator_and_scores_on_its_joints() -> None:
    baseline = {"baseline_pck": 0.768, "baseline_joint_error_px": 4.71}
    results = [
        _result("ghnerf", pck=0.38, pck_baseline_joints=0.399, joint_error_px_baseline_joints=9.5, **baseline),
        _result("enerf-heatmap", pck=0.2, pck_baseline_joints=0.21, joint_error_px_baseline_joints=12.25, **baseline),
    ]
    rows = pose_baseline_table(results).splitlines()
    assert len(rows) == 5 and "0.399" in rows[2] and "9.50" in rows[2] and "0.210" in rows[3]
    assert rows[4].startswith(f"| {BASELINE_LABEL}") and "0.768" in rows[4] and "4.71" in rows[4]
    assert pose_baseline_table([_result("ghnerf", pck=0.38)]) is None  # no baseline evaluated: no table


def test_novel_pose_table_puts_both_protocols_of_animatable_methods_side_by_side() -> None:
    anipixel = _result("anipixel", psnr=24.5, pck=0.31, **{"novel_pose/psnr": 23.25, "novel_pose/pck": 0.125})
    rows = novel_pose_table([_result("ghnerf", psnr=27.0), anipixel]).splitlines()
    assert len(rows) == 4  # header, rule, anipixel's two protocols; ghnerf has no novel-pose metrics
    assert "novel view" in rows[2] and "24.50" in rows[2] and "0.310" in rows[2]
    assert "novel pose" in rows[3] and "23.25" in rows[3] and "0.125" in rows[3] and "–" in rows[3]
    assert novel_pose_table([_result("ghnerf", psnr=27.0)]) is None
    assert "23.25" not in markdown_table([anipixel])  # the main table is the novel-view protocol
