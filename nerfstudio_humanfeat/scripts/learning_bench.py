"""ns-humanfeat-learning: the learning benchmark every method must pass, on the CPU, against wall time.

    ns-humanfeat-learning                                    # ghnerf, enerf-heatmap, hfnerf, keypointnerf; demo
    ns-humanfeat-learning --methods ghnerf --minutes 60 --splits demo bench --overfit-minutes 10

Two experiments per method, each a real ns-train run (with the CPU overrides) whose checkpoints are evaluated
through nerfstudio's eval path:
- overfit: one subject and one frame of the demo data, every camera a source and a target, evaluated on its own
  views: the steps and minutes until PSNR reaches ``--overfit-psnr`` (30), capped by ``--overfit-minutes``;
- generalise: each of ``--splits`` (the synthetic demo and bench presets) for ``--minutes`` of training, evaluated
  on the held-out subjects: PSNR, SSIM, PCK@0.2, MPJPE and heatmap MSE over wall time.
Written to ``--output-dir``: learning.md (tables, with GHNeRF's paper numbers labelled beside them), learning.csv
(every evaluated checkpoint with its wall time) and learning_curves.png. Minutes count from the start of ns-train
(data loading included) to each checkpoint's save.
"""

from __future__ import annotations

import json
import math
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import tyro
from nerfstudio.utils.rich_utils import CONSOLE

from nerfstudio_humanfeat.configs.cli import with_dataparser
from nerfstudio_humanfeat.configs.cpu import cpu_overrides
from nerfstudio_humanfeat.engine.cpu_allocator import allocator_environment
from nerfstudio_humanfeat.scripts.bench import LABELS, evaluate_checkpoints, format_value, paper_table, write_csv
from nerfstudio_humanfeat.synth.generator import PresetName, generate, make_spec

METRICS: Tuple[Tuple[str, str, str], ...] = (
    ("psnr", "PSNR ↑", ".2f"),
    ("ssim", "SSIM ↑", ".3f"),
    ("pck", "PCK@0.2 ↑", ".3f"),
    ("mpjpe_mm", "MPJPE (mm) ↓", ".1f"),
    ("heatmap_mse", "Heatmap MSE ↓", ".5f"),
)
"""(ns-eval key, header, format) of the learning tables and curves."""

Point = Tuple[int, float, Dict[str, object]]
"""(step, minutes since ns-train started, metrics) of one evaluated checkpoint."""


@dataclass
class Experiment:
    """One training run of the benchmark: a name, its data and the ns-train flags that make it what it is."""

    name: str
    preset: PresetName
    flags: Tuple[str, ...] = ()
    minutes: float = 10.0
    max_steps: int = 100_000


def overfit_flags(subject: str, num_cameras: int) -> Tuple[str, ...]:
    """Dataparser flags: one subject and frame, every camera a source and a target, evaluated on itself."""
    cameras = [str(c) for c in range(num_cameras)]
    prefix = "--pipeline.datamanager.dataparser."
    return (
        f"{prefix}subjects-train", subject,
        f"{prefix}subjects-test",
        f"{prefix}frame-start", "0",
        f"{prefix}frame-end", "1",
        f"{prefix}source-cameras", *cameras,
        f"{prefix}target-cameras", *cameras,
        f"{prefix}eval-subjects", "train",
    )  # fmt: skip


def checkpoint_minutes(config_path: Path) -> Dict[int, float]:
    """Minutes from the run's start (its config.yml being written) to the save of each checkpoint."""
    start = config_path.stat().st_mtime
    checkpoints = config_path.parent.joinpath("nerfstudio_models").glob("step-*.ckpt")
    return {int(p.stem.split("-")[1]): (p.stat().st_mtime - start) / 60 for p in checkpoints}


def first_reaching(curve: Sequence[Point], key: str, target: float) -> Optional[Point]:
    """The first evaluated checkpoint whose metric reaches `target`."""
    for point in curve:
        value = point[2].get(key)
        if isinstance(value, (int, float)) and value >= target:
            return point
    return None


def best(curve: Sequence[Point], key: str) -> Optional[float]:
    values = [p[2][key] for p in curve if isinstance(p[2].get(key), (int, float))]
    return max(values) if values else None


@dataclass
class LearningBench:
    """Overfit one frame and generalise to held-out subjects within a CPU budget, for every method."""

    output_dir: Path = Path("benchmarks/results/learning")
    methods: Tuple[str, ...] = ("ghnerf", "enerf-heatmap", "hfnerf", "keypointnerf", "anipixel")
    splits: Tuple[PresetName, ...] = ("demo",)
    """Synthetic presets of the generalisation runs (generated under ``--data-root`` when missing)."""
    data_root: Path = Path("data")
    minutes: float = 10.0
    """Training minutes of each generalisation run."""
    overfit_minutes: float = 10.0
    """Training minutes of each overfitting run; the table reports when ``--overfit-psnr`` was first reached."""
    overfit_psnr: float = 30.0
    overfit_subject: str = "synth_000"
    eval_every: int = 100
    """Steps between evaluated checkpoints."""
    eval_max_views: int = 8
    """Views evaluated per checkpoint."""
    skip_overfit: bool = False
    train_args: str = ""
    """Further ns-train flags for every run, as one string."""

    def experiments(self) -> List[Experiment]:
        runs = []
        if not self.skip_overfit:
            cameras = make_spec("demo").num_cameras
            flags = overfit_flags(self.overfit_subject, cameras)
            runs.append(Experiment("overfit", "demo", flags, self.overfit_minutes))
        runs += [Experiment(f"generalise-{preset}", preset, (), self.minutes) for preset in self.splits]
        return runs

    def data(self, preset: PresetName) -> Path:
        path = self.data_root / f"synth-{preset}"
        if not (path / "splits.json").exists():
            CONSOLE.print(f"generating the synthetic '{preset}' preset in {path}")
            generate(make_spec(preset, seed=0), path, progress=True)
        return path

    def run_dir(self, experiment: str, method: str) -> Path:
        return self.output_dir / "runs" / experiment / method / "run"

    def train(self, experiment: Experiment, method: str) -> Path:
        """One ns-train run under the experiment's budget; returns its config.yml."""
        args = [method, "--data", str(self.data(experiment.preset)), *cpu_overrides(method)]
        args += ["--output-dir", str(self.output_dir / "runs"), "--experiment-name", experiment.name]
        args += ["--timestamp", "run", "--max-num-iterations", str(experiment.max_steps)]
        args += ["--steps-per-save", str(self.eval_every), "--save-only-latest-checkpoint", "False"]
        args += ["--pipeline.datamanager.dataparser.eval-max-views", str(self.eval_max_views)]
        args = with_dataparser([*args, *experiment.flags, *shlex.split(self.train_args)])
        command = [sys.executable, "-m", "nerfstudio_humanfeat.scripts.train_budget", str(60 * experiment.minutes)]
        log = self.output_dir / "logs" / f"{experiment.name}-{method}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.run_dir(experiment.name, method), ignore_errors=True)
        CONSOLE.print(f"[bold]learning[/bold]: {experiment.name} {method}, {experiment.minutes:g} min (log: {log})")
        with log.open("w") as handle:
            result = subprocess.run(
                command + args, stdout=handle, stderr=subprocess.STDOUT, env=allocator_environment()
            )
        if result.returncode != 0:
            raise SystemExit(f"{experiment.name} {method} failed (exit {result.returncode}); see {log}")
        return self.run_dir(experiment.name, method) / "config.yml"

    def curve(self, config_path: Path) -> List[Point]:
        minutes = checkpoint_minutes(config_path)
        return [(step, minutes[step], metrics) for step, metrics in evaluate_checkpoints(config_path)]

    def main(self) -> None:
        start = time.time()
        results: Dict[str, Dict[str, List[Point]]] = {}
        for experiment in self.experiments():
            for method in self.methods:
                curve = self.curve(self.train(experiment, method))
                results.setdefault(experiment.name, {})[method] = curve
                (self.output_dir / "curves.json").write_text(json.dumps(results, indent=1))
        self.write(results, time.time() - start)

    def write(self, results: Dict[str, Dict[str, List[Point]]], seconds: float) -> None:
        rows = [
            {"experiment": name, "method": method, "step": step, "minutes": round(minutes, 3)}
            | {key: metrics.get(key) for key, _, _ in METRICS}
            for name, runs in results.items()
            for method, curve in runs.items()
            for step, minutes, metrics in curve
        ]
        write_csv(self.output_dir / "learning.csv", rows)
        plot_learning_curves(results, self.output_dir / "learning_curves.png")
        report = self.report(results, seconds)
        (self.output_dir / "learning.md").write_text(report)
        CONSOLE.print(report, markup=False)
        CONSOLE.print(f"wrote {self.output_dir / 'learning.md'}, learning.csv and learning_curves.png")

    def report(self, results: Dict[str, Dict[str, List[Point]]], seconds: float) -> str:
        lines = [
            "# Learning benchmark",
            "",
            "Ours: synthetic humans (this project's generator), CPU (2 cores), randomly initialised encoders, the "
            f"CPU overrides; checkpoints every {self.eval_every} steps, {self.eval_max_views} views evaluated each. "
            f"Wall time of this invocation: {seconds / 60:.1f} min.",
            "",
        ]
        if "overfit" in results:
            lines += [
                f"## Overfit: {self.overfit_subject}, frame 0, every camera a source and a target "
                f"(cap {self.overfit_minutes:g} min)",
                "",
                f"| Method | Steps to PSNR {self.overfit_psnr:g} | Minutes to PSNR {self.overfit_psnr:g} | Best PSNR "
                "| Steps run |",
                "| --- | ---: | ---: | ---: | ---: |",
            ]
            for method, curve in results["overfit"].items():
                hit = first_reaching(curve, "psnr", self.overfit_psnr)
                cells = [LABELS.get(method, method)]
                cells += [str(hit[0]), f"{hit[1]:.1f}"] if hit else ["not reached", "–"]
                cells += [format_value(best(curve, "psnr"), ".2f"), str(curve[-1][0] if curve else 0)]
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
        for name, runs in results.items():
            if name == "overfit":
                continue
            lines += [
                f"## Generalise: {name.split('-', 1)[1]} split, held-out subjects, {self.minutes:g} min of training",
                "",
                "| Method | Minutes | Steps | " + " | ".join(h for _, h, _ in METRICS) + " |",
                "| --- | ---: | ---: | " + " | ".join("---:" for _ in METRICS) + " |",
            ]
            for method, curve in runs.items():
                if not curve:
                    continue
                step, minutes, metrics = curve[-1]
                cells = [LABELS.get(method, method), f"{minutes:.1f}", str(step)]
                cells += [format_value(metrics.get(key), spec) for key, _, spec in METRICS]
                lines.append("| " + " | ".join(cells) + " |")
            lines += ["", *per_subject_table(runs)]
        lines += [
            "For reference only, GHNeRF's paper, Table 1: ZJU-MoCap (real captures), unseen subjects, 512x512, "
            "~200k steps on a GPU, ImageNet/DINO-pretrained encoders:",
            "",
            paper_table(),
            "",
        ]
        return "\n".join(lines)


def per_subject_table(runs: Dict[str, List[Point]]) -> List[str]:
    """PCK@0.2 and PSNR of each held-out subject at each method's last checkpoint (ns-eval's ``subject/*`` keys):
    the average is over a few subjects, and they can differ more than the methods do. Empty without those keys."""
    finals = {method: curve[-1][2] for method, curve in runs.items() if curve}
    subjects = sorted(
        {key.split("/")[1] for metrics in finals.values() for key in metrics if key.startswith("subject/")}
    )
    if not subjects:
        return []
    lines = [
        "PCK@0.2 / PSNR per held-out subject, last checkpoint:",
        "",
        "| Method | " + " | ".join(subjects) + " |",
        "| --- | " + " | ".join("---:" for _ in subjects) + " |",
    ]
    for method, metrics in finals.items():
        cells = [
            f"{format_value(metrics.get(f'subject/{name}/pck'), '.3f')} / "
            f"{format_value(metrics.get(f'subject/{name}/psnr'), '.2f')}"
            for name in subjects
        ]
        lines.append(f"| {LABELS.get(method, method)} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def plot_learning_curves(results: Dict[str, Dict[str, List[Point]]], path: Path) -> None:
    """One row per experiment, one panel per metric, one line per method, against wall-clock minutes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    rows, columns = max(len(names), 1), len(METRICS)
    figure, axes = plt.subplots(rows, columns, figsize=(3.4 * columns, 2.8 * rows), squeeze=False)
    for row, name in enumerate(names):
        for axis, (key, header, _) in zip(axes[row], METRICS):
            for method, curve in results[name].items():
                points = [(m, v[key]) for _, m, v in curve if isinstance(v.get(key), (int, float))]
                points = [(m, v) for m, v in points if math.isfinite(v)]
                if points:
                    axis.plot(*zip(*points), marker="o", markersize=3, label=LABELS.get(method, method))
            axis.set_title(f"{name}: {header}", fontsize=9)
            axis.set_xlabel("minutes")
            axis.grid(alpha=0.3)
        axes[row][0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def entrypoint() -> None:
    tyro.cli(LearningBench).main()


if __name__ == "__main__":
    entrypoint()
