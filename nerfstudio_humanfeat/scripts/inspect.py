"""ns-humanfeat-inspect: what a ZJU-MoCap-layout dataset holds, and every problem found in it.

Exit code 0 when everything reads and agrees; 1 with one line per problem (naming the file) otherwise.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import tyro
from nerfstudio.utils.rich_utils import CONSOLE
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from nerfstudio_humanfeat.data.catalog import HumanDataError, MaskMode, SubjectRecord
from nerfstudio_humanfeat.data.dataparsers.zju_mocap_dataparser import (
    SplitPlan,
    ZJUMocapDataParserConfig,
    find_sequences,
    resolve_split,
)
from nerfstudio_humanfeat.data.zju_io import (
    ReadOptions,
    SequenceLayout,
    check_view,
    load_annots,
    read_subject,
    select_frames,
)

AUTO_DECODE_MAX_VIEWS = 2000
_NO_PLAN = SplitPlan([], [], None, None, 0, None, 1, "none")
"""Subjects outside any split: even source cameras, odd target cameras."""


@dataclass
class InspectConfig:
    """Inspect a dataset in the ZJU-MoCap layout (real or synthetic)."""

    data: Path
    """Dataset root (one folder per sequence, optional splits.json)."""
    subjects: Optional[Tuple[str, ...]] = None
    """Sequences to inspect; None: all of them."""
    check_images: Optional[bool] = None
    """Decode every image, mask and dense-pose file fully (--check-images / --no-check-images); None: only when
    the dataset has fewer than 2000 views, else read image headers."""
    mask_mode: MaskMode = "union"
    image_scale: Optional[float] = None
    """Output/original resolution shown; None: the dataparser's default (0.5 for 1024 px originals)."""


@dataclass
class SubjectReport:
    """One subject's row of the table."""

    name: str
    split: str
    record: Optional[SubjectRecord] = None
    layout: Optional[SequenceLayout] = None
    num_frames: int = 0


def main(config: InspectConfig) -> int:
    """Print the dataset's contents and problems; return the exit code."""
    problems: List[HumanDataError] = []
    try:
        sequences = find_sequences(config.data)
    except HumanDataError as err:
        return _finish([err])
    if not sequences:
        return _finish([HumanDataError(f"{config.data}: no sequence (no folder holding an annots.npy)")])
    plan = _plan(config, sequences, problems)
    names = list(config.subjects) if config.subjects else list(sequences)
    for name in names:
        if name not in sequences:
            problems.append(HumanDataError(f"{config.data / name}: no such sequence (found {', '.join(sequences)})"))
    reports = [_read(config, name, sequences[name], plan, problems) for name in names if name in sequences]
    _check_files(config, reports, problems)
    CONSOLE.print(_table(reports, config.data))
    if plan is not None:
        CONSOLE.print(
            f"Split ({plan.origin}): train {plan.train or '-'}, test {plan.test or '-'}; "
            f"source cameras {plan.source_cameras or 'even'}, target cameras {plan.target_cameras or 'odd'}; "
            f"frames [{plan.frame_start}:{plan.frame_end}:{plan.frame_stride}]"
        )
    return _finish(problems)


def _plan(config: InspectConfig, sequences, problems: List[HumanDataError]) -> Optional[SplitPlan]:
    try:
        plan = resolve_split(ZJUMocapDataParserConfig(data=config.data), sequences)
    except HumanDataError as err:
        problems.append(err)
        return None
    if plan.origin == "none":
        CONSOLE.print("[yellow]No splits.json and no GHNeRF subject: the dataparser needs --subjects-train/-test.")
    return plan


def _read(
    config: InspectConfig, name: str, root: Path, plan: Optional[SplitPlan], problems: List[HumanDataError]
) -> SubjectReport:
    split = "train" if plan and name in plan.train else "test" if plan and name in plan.test else "-"
    report = SubjectReport(name=name, split=split, layout=SequenceLayout.detect(root))
    try:
        annots = load_annots(root / "annots.npy")
        source, target = (plan or _NO_PLAN).cameras_of(annots.num_cameras)
        frames = select_frames(annots.num_frames)
        report.num_frames = len(frames)
        options = ReadOptions(config.mask_mode, config.image_scale)
        cameras = list(range(annots.num_cameras))
        record_split = "test" if split == "test" else "train"
        report.record = read_subject(
            annots, record_split, source, target, frames, cameras, options, problems=problems, name=name
        )
    except HumanDataError as err:
        problems.append(err)
    return report


def _check_files(config: InspectConfig, reports: Sequence[SubjectReport], problems: List[HumanDataError]) -> None:
    """Read every view's image and masks (headers, or full decodes) of the readable subjects."""
    records = [r.record for r in reports if r.record is not None]
    total = sum(len(s.frames) * len(s.rig) for s in records)
    decode = config.check_images if config.check_images is not None else total < AUTO_DECODE_MAX_VIEWS
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=CONSOLE, transient=True) as progress:
        task = progress.add_task("Decoding views" if decode else "Reading image headers", total=total)
        for subject in records:
            for frame in subject.frames:
                for camera in range(len(subject.rig)):
                    problems.extend(check_view(subject, frame, camera, decode))
                    progress.advance(task)
    CONSOLE.print(f"Checked {total} views ({'full decode' if decode else 'headers only'}).")


KEYPOINT_LABELS = {
    "annots-kpts2d": "annots",
    "openpose-json": "openpose",
    "keypoints3d-projected": "kp3d-proj",
    "joints3d-projected": "jnt3d-proj",
}


def _table(reports: Sequence[SubjectReport], root: Path) -> Table:
    table = Table(title=f"{root}", box=None, padding=(0, 1), pad_edge=False, header_style="bold")
    headers = ("subject", "split", "frames", "cams s/t", "size", "keypoints", "valid kp", "masks", "SMPL", "verts")
    for header in (*headers, "dense", "bbox (m)"):
        table.add_column(header, overflow="fold", no_wrap=header == "subject")
    for r in reports:
        layout, s = r.layout, r.record
        if s is None or layout is None:
            table.add_row(r.name, r.split, "[red]unreadable")
            continue
        rig = s.rig
        keypoints = [f.keypoints2d for f in s.frames if f.keypoints2d is not None]
        valid = sum(int((k[..., 2] > 0).sum()) for k in keypoints)
        total = sum(k.shape[0] * k.shape[1] for k in keypoints)
        boxes = np.stack([(f.bbox[1] - f.bbox[0]).numpy() for f in s.frames]) if s.frames else np.zeros((1, 3))
        table.add_row(
            r.name,
            r.split,
            f"{len(s.frames)}/{r.num_frames}",
            f"{len(rig)}: {len(s.source_cameras)}/{len(s.target_cameras)}",
            f"{_size(rig.original_height, rig.original_width)}>{_size(rig.height, rig.width)}",
            KEYPOINT_LABELS.get(s.keypoint_source, s.keypoint_source),
            f"{valid}/{total}",
            "+".join(d.replace("mask_", "") for d in layout.mask_dirs) or "none",
            {"new_params": "new", "params": "yes"}.get(layout.params_dir or "", "none"),
            {"new_vertices": "new", "vertices": "yes"}.get(layout.vertices_dir or "", "none"),
            "yes" if layout.densepose else "no",
            "x".join(f"{v:.1f}" for v in boxes.mean(0)),
        )
    return table


def _size(height: int, width: int) -> str:
    return str(width) if width == height else f"{width}x{height}"


def _finish(problems: Sequence[HumanDataError]) -> int:
    lines = list(dict.fromkeys(str(p) for p in problems))  # a file can fail in two checks: say it once
    if not lines:
        CONSOLE.print("[green]No problem found.")
        return 0
    CONSOLE.print(f"[red]{len(lines)} problem(s):")
    for line in lines:
        CONSOLE.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
    return 1


def _flag_args(args: Sequence[str]) -> List[str]:
    """Accept --check-images / --no-check-images as flags for the tri-state option."""
    out: List[str] = []
    for i, arg in enumerate(args):
        nxt = args[i + 1] if i + 1 < len(args) else ""
        if arg == "--check-images" and nxt not in ("True", "False", "None"):
            out += [arg, "True"]
        elif arg == "--no-check-images":
            out += ["--check-images", "False"]
        else:
            out.append(arg)
    return out


def entrypoint(args: Optional[Sequence[str]] = None) -> None:
    """Command-line entry point of ns-humanfeat-inspect."""
    tyro.extras.set_accent_color("bright_yellow")
    config = tyro.cli(InspectConfig, args=_flag_args(sys.argv[1:] if args is None else args))
    sys.exit(main(config))


if __name__ == "__main__":
    entrypoint()
