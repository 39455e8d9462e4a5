"""ns-humanfeat-bench: train and evaluate methods on one synthetic split with one budget; GHNeRF's Table 1 layout.

    ns-humanfeat-bench --max-steps 1000 --eval-every 250                  # CPU: CPU overrides, 1000 steps each
    ns-humanfeat-bench --minutes 10 --max-steps 100000 --eval-every 500   # CPU: 10 minutes of training each
    ns-humanfeat-bench --device cuda --eval-every 10000                   # GPU: the methods' (paper) settings

Each method trains in its own process through ns-train's command line (``train_budget``: ns-train with a
wall-clock limit), saving a checkpoint every ``--eval-every`` steps; every checkpoint is then evaluated on the
held-out subjects through nerfstudio's eval path (``get_average_eval_image_metrics``, as ns-eval). Written to
``--output-dir``: table.md and table.csv (last checkpoint), curves.csv and curves.png (metrics over steps),
evals/<method>.json (all metrics per checkpoint), logs/<method>.log and the runs themselves under runs/.
"""

from __future__ import annotations

import csv
import json
import math
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Literal, Optional, Sequence, Tuple

import tyro
from nerfstudio.utils.eval_utils import eval_load_checkpoint, eval_setup
from nerfstudio.utils.rich_utils import CONSOLE

from nerfstudio_humanfeat.configs.cli import with_dataparser
from nerfstudio_humanfeat.configs.cpu import cpu_overrides
from nerfstudio_humanfeat.engine.cpu_allocator import allocator_environment
from nerfstudio_humanfeat.pose_baseline import BASELINE_KEYS, BASELINE_LABEL
from nerfstudio_humanfeat.synth.generator import PresetName, generate, make_spec

DEFAULT_METHODS = ("ghnerf", "ghnerf-dino", "enerf-heatmap", "hfnerf", "keypointnerf", "anipixel")
LABELS = {
    "enerf-heatmap": "ENeRF+Heatmap",
    "ghnerf": "GHNeRF+ResNet34",
    "ghnerf-resnet18": "GHNeRF+ResNet18",
    "ghnerf-dino": "GHNeRF+DINO",
    "hfnerf": "HFNeRF+ResNet34",
    "hfnerf-dino": "HFNeRF+DINO",
    "keypointnerf": "KeypointNeRF+Heads",
    "anipixel": "AniPixel+Heads",
}
COLUMNS: Tuple[Tuple[str, str, str], ...] = (
    ("psnr", "PSNR ↑", ".2f"),
    ("ssim", "SSIM ↑", ".3f"),
    ("lpips", "LPIPS ↓", ".4f"),
    ("heatmap_mse", "MSE ↓", ".5f"),
    ("pck", "PCK ↑", ".3f"),
    ("mpjpe_mm", "MPJPE (mm) ↓", ".1f"),
    ("fps", "FPS ↑", ".2f"),
)
"""(ns-eval key, header, format) of the table's metric columns: the paper's Table 1, then MPJPE and FPS."""
TABLE_1_COLUMNS = COLUMNS[:5]
"""The paper's own columns: PSNR, SSIM, LPIPS, heatmap MSE, PCK."""
PROTOCOL_KEYS = tuple(f"novel_pose/{key}" for key, _, _ in TABLE_1_COLUMNS)
"""ns-eval keys of the novel-pose protocol (animatable methods): frames rendered from another frame's sources."""
EXTRA_KEYS = ("keypoints3d_detected", "pck_pooled", "densepose_mse", *BASELINE_KEYS, *PROTOCOL_KEYS)
"""Further ns-eval keys kept in the CSV files."""
PAPER_TABLE_1 = (
    ("ENeRF+Heatmap", "31.48", "0.965", "0.050", "0.0005", "0.438"),
    ("Ours+ResNet", "31.20", "0.963", "0.054", "0.0004", "0.573"),
    ("Ours+DINO", "31.61", "0.966", "0.050", "0.0003", "0.691"),
)
"""GHNeRF Table 1: PSNR, SSIM, LPIPS, MSE, PCK."""
PAPER_SETTING = (
    "ZJU-MoCap real captures, unseen subjects, 512x512, ~200k steps on a GPU (RTX 3090 for FPS), ImageNet/DINO-"
    "pretrained encoders"
)
"""Where the paper's rows come from, printed with them."""

GPU_FLAGS = ["--machine.device-type", "cuda", "--vis", "tensorboard", "--viewer.quit-on-train-completion", "True"]
"""ns-train flags of a GPU run; everything else stays at the method's (paper) settings."""

Curve = List[Tuple[int, Dict[str, object]]]


def prepare_data(path: Path, preset: PresetName) -> Path:
    """The dataset at ``path``, generated from the synthetic preset (seed 0) when it has no splits.json."""
    if not (path / "splits.json").exists():
        CONSOLE.print(f"generating the synthetic '{preset}' preset in {path}")
        generate(make_spec(preset, seed=0), path, progress=True)
    return path


def evaluate_checkpoints(config_path: Path) -> Curve:
    """ns-eval's metrics on the held-out views for every checkpoint of a run, in step order."""
    config, pipeline, _, _ = eval_setup(config_path, test_mode="test")
    assert config.load_dir is not None
    steps = sorted(int(p.stem.split("-")[1]) for p in config.load_dir.glob("step-*.ckpt"))
    curve: Curve = []
    for step in steps:
        config.load_step = step
        eval_load_checkpoint(config, pipeline)
        curve.append((step, pipeline.get_average_eval_image_metrics(step=step)))
    return curve


def format_value(value: object, spec: str) -> str:
    """A table cell: the formatted number, or '–' when the metric is unavailable."""
    if not isinstance(value, (int, float)) or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return format(value, spec)


@dataclass
class MethodResult:
    """One method's run: its evaluated checkpoints and training wall time."""

    method: str
    curve: Curve
    train_seconds: float

    @property
    def final(self) -> Dict[str, object]:
        return self.curve[-1][1] if self.curve else {}

    @property
    def steps(self) -> Optional[int]:
        return self.curve[-1][0] if self.curve else None

    def row(self) -> Dict[str, object]:
        """The CSV row of the last checkpoint."""
        row: Dict[str, object] = {"method": self.method, "label": LABELS.get(self.method, self.method)}
        row.update(steps=self.steps, train_seconds=self.train_seconds)
        row.update({key: self.final.get(key) for key, _, _ in COLUMNS})
        row.update({key: self.final.get(key) for key in EXTRA_KEYS})
        return row


def markdown_table(results: Sequence[MethodResult]) -> str:
    """GHNeRF Table 1's layout (PSNR, SSIM, LPIPS, MSE, PCK), then MPJPE, FPS, steps and training time."""
    headers = ["Method (ours; setting above)", *(header for _, header, _ in COLUMNS), "Steps", "Train (min)"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join([" --- "] + [" ---: "] * (len(headers) - 1)) + "|"]
    for result in results:
        cells = [LABELS.get(result.method, result.method)]
        cells += [format_value(result.final.get(key), spec) for key, _, spec in COLUMNS]
        minutes = result.train_seconds / 60
        cells += [format_value(result.steps, "d"), format_value(minutes, ".1f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pose_baseline_table(results: Sequence[MethodResult]) -> Optional[str]:
    """GHNeRF Table 3's comparison: PCK of the rendered keypoints and of a 2D pose estimator run on the ground-truth
    images, on the joints the estimator detects; None when no run evaluated the baseline."""
    with_baseline = [r for r in results if isinstance(r.final.get("baseline_pck"), (int, float))]
    if not with_baseline:
        return None
    lines = ["| Keypoints from | PCK@0.2 ↑ (estimator's joints) | 2D error (px) ↓ |", "| --- | ---: | ---: |"]
    for result in results:
        pck_value = format_value(result.final.get("pck_baseline_joints"), ".3f")
        error = format_value(result.final.get("joint_error_px_baseline_joints"), ".2f")
        lines.append(f"| {LABELS.get(result.method, result.method)} (rendered heatmaps) | {pck_value} | {error} |")
    final = with_baseline[0].final  # the same ground-truth views for every method
    cells = [format_value(final.get("baseline_pck"), ".3f"), format_value(final.get("baseline_joint_error_px"), ".2f")]
    lines.append(f"| {BASELINE_LABEL} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def novel_pose_table(results: Sequence[MethodResult]) -> Optional[str]:
    """Novel views and novel poses side by side for the methods evaluated under both protocols (AniPixel's
    Table 1 layout); None when no method was."""
    animatable = [r for r in results if isinstance(r.final.get("novel_pose/psnr"), (int, float))]
    if not animatable:
        return None
    columns = TABLE_1_COLUMNS
    headers = ["Method (ours)", "Protocol", *(header for _, header, _ in columns)]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join([" --- "] * 2 + [" ---: "] * len(columns)) + "|"]
    for result in animatable:
        for protocol, prefix in (("novel view", ""), ("novel pose", "novel_pose/")):
            cells = [LABELS.get(result.method, result.method), protocol]
            cells += [format_value(result.final.get(prefix + key), spec) for key, _, spec in columns]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


NOVEL_POSE_INTRO = (
    "Animatable methods under both protocols, same held-out subjects: novel view (each frame from its own source "
    "views) and novel pose (a frame rendered from the source views of another frame of the subject, its SMPL pose "
    "driving the render):"
)
POSE_BASELINE_INTRO = (
    "Keypoints against an off-the-shelf 2D pose estimator (GHNeRF Table 3), on the joints it can detect (BODY_25 "
    "without the small toes), same held-out views and ground truth; the estimator's 2D error counts the joints it "
    "found:"
)


def section(intro: str, table: Optional[str]) -> List[str]:
    """table.md lines of an optional table with its introduction (none without the table)."""
    return [] if table is None else [intro, "", table, ""]


def paper_table() -> str:
    """GHNeRF's Table 1, each row labelled with its setting (not comparable with synthetic CPU runs)."""
    lines = [
        "| Method (paper; setting below) | PSNR ↑ | SSIM ↑ | LPIPS ↓ | MSE ↓ | PCK ↑ |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += ["| " + " | ".join([f"{row[0]} (paper)", *row[1:]]) + " |" for row in PAPER_TABLE_1]
    return "\n".join(lines + ["", f"Paper setting: {PAPER_SETTING}."])


def write_csv(path: Path, rows: Sequence[Dict[str, object]]) -> None:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def curve_rows(results: Sequence[MethodResult]) -> List[Dict[str, object]]:
    """One CSV row per (method, evaluated checkpoint)."""
    keys = [key for key, _, _ in COLUMNS] + list(EXTRA_KEYS)
    return [
        {"method": r.method, "step": step, **{key: metrics.get(key) for key in keys}}
        for r in results
        for step, metrics in r.curve
    ]


def plot_curves(results: Sequence[MethodResult], path: Path) -> None:
    """One panel per metric that some checkpoint has, one line per method, over training steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(k, h) for k, h, _ in COLUMNS if any(m.get(k) is not None for r in results for _, m in r.curve)]
    columns = min(max(len(panels), 1), 4)
    rows = math.ceil(max(len(panels), 1) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 3.0 * rows), squeeze=False)
    for axis in axes.flat[len(panels) :]:
        axis.axis("off")
    for axis, (key, header) in zip(axes.flat, panels):
        for result in results:
            points = [(step, m[key]) for step, m in result.curve if m.get(key) is not None]
            if points:
                axis.plot(*zip(*points), marker="o", label=LABELS.get(result.method, result.method))
        axis.set_title(header)
        axis.set_xlabel("step")
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


@dataclass
class Bench:
    """Train and evaluate methods on the same synthetic split with the same budget; write a Table 1 and curves."""

    output_dir: Path = Path("benchmarks/results/table")
    methods: Tuple[str, ...] = DEFAULT_METHODS
    data: Path = Path("data/synth-bench")
    """Dataset root; generated from ``--preset`` when it has no splits.json."""
    preset: PresetName = "bench"
    device: Literal["cpu", "cuda"] = "cpu"
    """cpu: with the CPU overrides (``configs.cpu``); cuda: the methods' own (paper) settings."""
    max_steps: Optional[int] = None
    """Training steps per method; default: 1000 on cpu, the method's own (200k) on cuda."""
    minutes: Optional[float] = None
    """Wall-clock training budget per method (training stops at whichever of steps or minutes comes first)."""
    eval_every: int = 250
    """Steps between the checkpoints that are evaluated for the curves."""
    eval_max_views: Optional[int] = 8
    """Held-out views evaluated per checkpoint, spread over subjects and frames; None: all."""
    train_args: str = ""
    """Further ns-train flags for every method, as one string (e.g. "--pipeline.model.keypoints-3d-voxel-size 0.03")."""
    resume: bool = False
    """Keep what output_dir already holds: evaluated methods (evals/) as they are, finished trainings (logs/) are
    only evaluated; the other methods run as usual."""

    def main(self) -> None:
        data = prepare_data(self.data, self.preset)
        start = time.time()
        results = [self.run_method(method, data) for method in self.methods]
        self.write_outputs(results, time.time() - start)

    @property
    def steps(self) -> Optional[int]:
        """Training steps per method (None: the method's own)."""
        return self.max_steps if self.max_steps is not None else (1000 if self.device == "cpu" else None)

    def config_path(self, method: str) -> Path:
        return self.output_dir / "runs" / "bench" / method / "run" / "config.yml"

    def train_command(self, method: str, data: Path) -> List[str]:
        """The ns-train command line of one method under this budget."""
        args = [method, "--data", str(data), "--output-dir", str(self.output_dir / "runs")]
        args += ["--experiment-name", "bench", "--timestamp", "run"]
        if self.device == "cpu":
            args += cpu_overrides(method)
        else:
            args += GPU_FLAGS
        if self.steps is not None:
            args += ["--max-num-iterations", str(self.steps)]
        args += ["--steps-per-save", str(self.eval_every), "--save-only-latest-checkpoint", "False"]
        args += ["--steps-per-eval-all-images", str(10**9)]
        if self.eval_max_views is not None:
            args += ["--pipeline.datamanager.dataparser.eval-max-views", str(self.eval_max_views)]
        return with_dataparser(args + shlex.split(self.train_args))

    def train(self, method: str, data: Path) -> None:
        """Trains one method in its own process; its command and wall time go to logs/<method>.json."""
        budget = 60.0 * self.minutes if self.minutes else 0.0
        command = [sys.executable, "-m", "nerfstudio_humanfeat.scripts.train_budget", str(budget)]
        command += self.train_command(method, data)
        logs = self.output_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.config_path(method).parent, ignore_errors=True)  # no checkpoints of an earlier run
        CONSOLE.print(f"[bold]bench[/bold]: training {method} (log: {logs / f'{method}.log'})")
        start = time.time()
        with (logs / f"{method}.log").open("w") as log:
            result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=allocator_environment())
        seconds = time.time() - start
        if result.returncode != 0:
            raise SystemExit(f"training {method} failed (exit {result.returncode}); see {logs / f'{method}.log'}")
        (logs / f"{method}.json").write_text(json.dumps({"train_seconds": seconds, "command": command}))

    def run_method(self, method: str, data: Path) -> MethodResult:
        """Trains (unless resumed) and evaluates one method; its curve is saved to evals/<method>.json."""
        record, evals = self.output_dir / "logs" / f"{method}.json", self.output_dir / "evals" / f"{method}.json"
        if not (self.resume and record.exists()):
            self.train(method, data)
        if self.resume and evals.exists():
            curve = [(step, metrics) for step, metrics in json.loads(evals.read_text())]
        else:
            curve = evaluate_checkpoints(self.config_path(method))
            evals.parent.mkdir(parents=True, exist_ok=True)
            evals.write_text(json.dumps(curve, indent=1))
        return MethodResult(method, curve, json.loads(record.read_text())["train_seconds"])

    def write_outputs(self, results: Sequence[MethodResult], seconds: float) -> None:
        out = self.output_dir
        write_csv(out / "table.csv", [r.row() for r in results])
        write_csv(out / "curves.csv", curve_rows(results))
        plot_curves(results, out / "curves.png")
        table = markdown_table(results)
        (out / "table.md").write_text(self.report(results, table, seconds))
        CONSOLE.print(table)
        for extra in (novel_pose_table(results), pose_baseline_table(results)):
            if extra is not None:
                CONSOLE.print(extra)
        CONSOLE.print(f"wrote {out / 'table.md'}, table.csv, curves.csv and curves.png")

    def report(self, results: Sequence[MethodResult], table: str, seconds: float) -> str:
        """table.md: the budget, the table, what the columns mean, and the paper's numbers for reference."""
        budget = f"{self.steps or 'the method default of'} steps"
        if self.minutes:
            budget += f" or {self.minutes:g} min of training, whichever comes first"
        notes = {k: v for r in results for k, v in r.final.items() if k.startswith("notes/")}
        lines = [
            "# Benchmark: generalization to held-out subjects",
            "",
            "Ours: this project's synthetic humans (not ZJU-MoCap), encoders from random initialisation (no pretrained "
            "weights here); the paper's rows below come from another setting and are printed for orientation only.",
            "",
            f"Data: {self.data}. Device: {self.device}"
            + (" with the CPU overrides" if self.device == "cpu" else " with the methods' settings")
            + f". Budget per method: {budget}, checkpoints every {self.eval_every} steps. Evaluation: "
            + f"{self.eval_max_views or 'all'} held-out views per checkpoint. "
            + f"Wall time of this invocation: {seconds / 60:.1f} min.",
            "",
            table,
            "",
            "MSE: heatmap MSE; PCK: PCK@0.2 of the torso diameter, mean over views; MPJPE: 3D keypoints (mpjpe_mm "
            "below) against the ground-truth joints; FPS: full-frame render alone (no metric, no keypoint "
            "extraction), per view; "
            "'–': unavailable (see the notes).",
            "",
            *[f"- {key[len('notes/') :]}: {text}" for key, text in notes.items()],
            "",
            *section(NOVEL_POSE_INTRO, novel_pose_table(results)),
            *section(POSE_BASELINE_INTRO, pose_baseline_table(results)),
            "GHNeRF paper, Table 1, for reference:",
            "",
            paper_table(),
            "",
        ]
        return "\n".join(lines)


def entrypoint() -> None:
    tyro.cli(Bench).main()


if __name__ == "__main__":
    entrypoint()
