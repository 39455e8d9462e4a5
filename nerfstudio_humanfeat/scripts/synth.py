"""ns-humanfeat-synth: render a synthetic multi-view human dataset in the ZJU-MoCap (Neural Body) layout, or in
the Human3.6M (Animatable NeRF) or RenderPeople (SHERF) layout (--layout).

Procedural SMPL-format bodies (posed through smplx) in parametric motions, ray cast on the CPU into a
ring of distorted cameras; writes images, masks, SMPL fits, 2D/3D keypoints, dense pose and splits.json
as docs/data_format.md describes.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import tyro
from rich.console import Console
from rich.table import Table

from nerfstudio_humanfeat.synth.background import BackgroundName
from nerfstudio_humanfeat.synth.generator import (
    LayoutName,
    PresetName,
    SynthSummary,
    TestMotions,
    generate,
    make_spec,
)

CONSOLE = Console()


@dataclass
class SynthConfig:
    """Generate a synthetic human dataset (real ZJU-MoCap layout plus dense pose and splits.json)."""

    output_dir: Path
    """Dataset root to write; it must be missing or empty unless --overwrite is given."""
    preset: PresetName = "demo"
    """Size: tiny (3 subjects of which 1 test, 2 frames, 8 cameras, 96 px; for tests), demo (6 / 2, 4 frames,
    12 cameras, 128 px) or bench (8 / 2, 10 frames, 16 cameras, 256 px, dome background)."""
    seed: int = 0
    """Random seed; the same seed and options write the same files."""
    num_subjects: Optional[int] = None
    """Override the preset's number of subjects."""
    num_test_subjects: Optional[int] = None
    """Subjects held out for testing (the last ones); default: the preset's, or a third when --num-subjects is
    given."""
    num_frames: Optional[int] = None
    """Override the preset's frames per subject."""
    num_cameras: Optional[int] = None
    """Override the cameras per subject (default: the preset's for zju, 4 for h36m, 36 for renderpeople; zju: even
    ones are sources, odd ones targets)."""
    resolution: Optional[int] = None
    """Override the preset's image size in pixels (square images; renderpeople's bench preset: 512)."""
    layout: LayoutName = "zju"
    """On-disk layout: zju (ZJU-MoCap, Neural Body), h36m (Human3.6M as Animatable NeRF processed it: S1/Posing/
    with lbs/ weight grids) or renderpeople (SHERF's: img/camera0000/0000.jpg, cameras.json, smplx-convention fits,
    human_list.txt). The same subjects (bodies, motions, camera ring, appearance) in every layout."""
    supersample: int = 3
    """Anti-aliasing: samples per pixel side (odd; 1 turns it off)."""
    background: Annotated[
        Optional[BackgroundName], tyro.conf.arg(metavar="{black,dome}", help_behavior_hint="(default: the preset's)")
    ] = None
    """Behind the person: black, or dome (a tiled floor and a textured capture dome, as in real captures, to
    check that training masks the background away). bench uses dome, tiny and demo black."""
    test_motions: Annotated[
        Optional[TestMotions], tyro.conf.arg(metavar="{any,seen}", help_behavior_hint="(default: the preset's)")
    ] = None
    """Held-out subjects' motions: any (subject i does motion i mod 5, possibly one no training subject does) or
    seen (moved onto a training subject's motion: unseen people, seen kind of motion). Every preset uses any;
    bench's held-out motions are seen anyway, demo's jumping jack (seed 0) is not."""
    overwrite: bool = False
    """Replace the subjects, body model and splits.json of a previous dataset in --output-dir."""
    quiet: bool = False
    """No progress bar."""


def print_summary(summary: SynthSummary) -> None:
    """Subjects, sizes and time of a generated dataset."""
    spec = summary.spec
    table = Table(title=f"Synthetic dataset ({spec.layout} layout) in {summary.root}")
    for column in ("subject", "split", "motion"):
        table.add_column(column)
    for name, split, motion in summary.subjects:
        table.add_row(name, split, motion)
    CONSOLE.print(table)
    CONSOLE.print(
        f"{spec.num_subjects} subjects x {spec.num_frames} frames x {spec.num_cameras} cameras = "
        f"{summary.num_views} views at {spec.resolution}x{spec.resolution} px, {spec.background} background, "
        f"seed {spec.seed}; "
        f"body model {summary.num_vertices} vertices / {summary.num_faces} faces; "
        f"{summary.seconds:.1f} s ({1000 * summary.seconds / max(summary.num_views, 1):.0f} ms per view)"
    )


def main(config: SynthConfig) -> SynthSummary:
    spec = make_spec(
        config.preset,
        seed=config.seed,
        num_subjects=config.num_subjects,
        num_test_subjects=config.num_test_subjects,
        num_frames=config.num_frames,
        num_cameras=config.num_cameras,
        resolution=config.resolution,
        supersample=config.supersample,
        background=config.background,
        layout=config.layout,
        test_motions=config.test_motions,
    )
    summary = generate(spec, config.output_dir, overwrite=config.overwrite, progress=not config.quiet)
    print_summary(summary)
    return summary


def entrypoint() -> None:
    """Console script ns-humanfeat-synth."""
    config = tyro.cli(SynthConfig, description=__doc__)
    try:
        main(config)
    except (FileExistsError, ValueError) as err:
        CONSOLE.print(f"[bold red]ns-humanfeat-synth: {err}")
        sys.exit(1)


if __name__ == "__main__":
    entrypoint()
