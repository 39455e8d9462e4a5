"""ns-humanfeat-inspect: what a dataset holds, and every problem found in it.

Reads the ZJU-MoCap layout, Animatable NeRF's Human3.6M layout (`S1/Posing/`, with its lbs/ weight grids) and SHERF's
RenderPeople layout (`img/camera0000/`, cameras.json, SMPL fits, human_list.txt), detected from the files.

Exit code 0 when everything reads and agrees; 1 with one line per problem (naming the file) otherwise.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Literal, Optional, Sequence, Tuple

import numpy as np
import tyro
from nerfstudio.utils.rich_utils import CONSOLE
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from nerfstudio_humanfeat.body.smpl import SMPLBody, resolve_smpl_model
from nerfstudio_humanfeat.data import h36m_io
from nerfstudio_humanfeat.data import renderpeople_io as rp
from nerfstudio_humanfeat.data.catalog import HumanDataError, MaskMode, SubjectRecord
from nerfstudio_humanfeat.data.dataparsers.human36m_dataparser import ANINERF_SPLIT, Human36MDataParserConfig
from nerfstudio_humanfeat.data.dataparsers.renderpeople_dataparser import (
    RenderPeopleDataParserConfig,
    sherf_paper_split,
)
from nerfstudio_humanfeat.data.dataparsers.zju_mocap_dataparser import (
    PaperSplit,
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
Layout = Literal["auto", "zju", "h36m", "renderpeople"]
NON_IMAGE_FOLDERS = frozenset(
    ("mask", "mask_cihp", "params", "vertices", "new_params", "new_vertices", "lbs", "keypoints2d", "keypoints3d",
     "joints3d", "densepose")
)  # fmt: skip
"""Folders of a sequence that mirror the images or hold per-frame files: never camera folders."""
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
    layout: Layout = "auto"
    """Dataset layout: zju, h36m (S1/Posing/...), renderpeople (img/camera0000/..., cameras.json); auto: detected."""


@dataclass
class SubjectReport:
    """One subject's row of the table."""

    name: str
    split: str
    record: Optional[SubjectRecord] = None
    layout: Optional[SequenceLayout] = None
    num_frames: int = 0


def detect_layout(root: Path) -> Layout:
    """renderpeople when a subject folder holds cameras.json (or the root human_list.txt), h36m when one holds
    Posing/annots.npy, else zju."""
    if not root.is_dir():
        return "zju"
    folders = [p for p in root.iterdir() if p.is_dir()]
    if (root / rp.HUMAN_LIST).is_file() or any((p / rp.CAMERAS_FILE).is_file() for p in folders):
        return "renderpeople"
    if h36m_io.is_h36m_root(root):
        return "h36m"
    return "zju"


def main(config: InspectConfig) -> int:
    """Print the dataset's contents and problems; return the exit code."""
    problems: List[HumanDataError] = []
    layout = detect_layout(config.data) if config.layout == "auto" else config.layout
    try:
        if layout == "renderpeople":
            sequences = rp.find_subjects(config.data)
        elif layout == "h36m":
            sequences = h36m_io.find_sequences(config.data)
        else:
            sequences = find_sequences(config.data)
    except HumanDataError as err:
        return _finish([err])
    if not sequences:
        what = "cameras.json or img/" if layout == "renderpeople" else "an annots.npy"
        return _finish([HumanDataError(f"{config.data}: no sequence (no folder holding {what})")])
    CONSOLE.print(f"Layout: {layout}{' (detected)' if config.layout == 'auto' else ''}")
    plan = _plan(config, sequences, problems, layout)
    names = list(config.subjects) if config.subjects else list(sequences)
    for name in names:
        if name not in sequences:
            problems.append(HumanDataError(f"{config.data / name}: no such sequence (found {', '.join(sequences)})"))
    if layout == "renderpeople":
        _check_human_list(config.data, sequences, problems)
        body = _body(config, problems)
        reports = [_read_rp(config, n, sequences[n], plan, body, problems) for n in names if n in sequences]
    else:
        reports = [_read(config, name, sequences[name], plan, problems) for name in names if name in sequences]
    if layout == "h36m":
        for report in reports:
            _check_h36m(report, problems)
    _check_files(config, reports, problems)
    CONSOLE.print(_table(reports, config.data))
    if plan is not None:
        CONSOLE.print(
            f"Split ({plan.origin}): train {plan.train or '-'}, test {plan.test or '-'}; "
            f"source cameras {plan.source_cameras or 'even'}, target cameras {plan.target_cameras or 'odd'}; "
            f"frames [{plan.frame_start}:{plan.frame_end}:{plan.frame_stride}]"
        )
    return _finish(problems)


def _plan(
    config: InspectConfig, sequences: Dict[str, Path], problems: List[HumanDataError], layout: Layout = "zju"
) -> Optional[SplitPlan]:
    parser_config: ZJUMocapDataParserConfig
    paper: Optional[PaperSplit] = None
    try:
        if layout == "renderpeople":
            parser_config, paper = (
                RenderPeopleDataParserConfig(data=config.data),
                sherf_paper_split(config.data, sequences),
            )
        elif layout == "h36m":
            parser_config, paper = Human36MDataParserConfig(data=config.data), ANINERF_SPLIT
        else:
            parser_config = ZJUMocapDataParserConfig(data=config.data)
        plan = resolve_split(parser_config, sequences, paper) if paper else resolve_split(parser_config, sequences)
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


def _image_folders(root: Path) -> List[str]:
    """Folders of a sequence holding images directly (its camera folders)."""
    folders = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name not in NON_IMAGE_FOLDERS):
        if any(f.suffix.lower() in (".jpg", ".jpeg", ".png") for f in folder.iterdir()):
            folders.append(folder.name)
    return folders


def _check_h36m(report: SubjectReport, problems: List[HumanDataError]) -> None:
    """Human3.6M extras: the camera folders agree with annots.npy's cameras; lbs/ has every frame's weight grid."""
    record = report.record
    if record is None:
        return
    folders = _image_folders(record.root)
    if sorted(folders) != sorted(record.rig.names):
        problems.append(
            HumanDataError(
                f"{record.root / 'annots.npy'}: camera count mismatch: annots.npy has {len(record.rig)} cameras "
                f"({', '.join(record.rig.names)}), the sequence holds {len(folders)} image folders "
                f"({', '.join(folders)})"
            )
        )
    h36m_io.check_lbs(record.root, [f.frame_id for f in record.frames], problems)


def _check_human_list(root: Path, subjects: Dict[str, Path], problems: List[HumanDataError]) -> None:
    path = root / rp.HUMAN_LIST
    if not path.is_file():
        CONSOLE.print(f"[yellow]No {rp.HUMAN_LIST}: SHERF's split falls back to the subject folders in name order.")
        return
    try:
        missing = [name for name in rp.read_human_list(path) if name not in subjects]
    except HumanDataError as err:
        problems.append(err)
        return
    if missing:
        problems.append(HumanDataError(f"{path}: lists subjects without a folder: {', '.join(missing[:10])}"))


def _body(config: InspectConfig, problems: List[HumanDataError]) -> Optional[SMPLBody]:
    try:
        return SMPLBody.from_file(resolve_smpl_model(None, config.data))
    except FileNotFoundError as err:
        problems.append(HumanDataError(f"{config.data}: {err}"))
        return None


def _read_rp(
    config: InspectConfig,
    name: str,
    root: Path,
    plan: Optional[SplitPlan],
    body: Optional[SMPLBody],
    problems: List[HumanDataError],
) -> SubjectReport:
    """One RenderPeople subject: cameras.json against img/, the SMPL fit, every frame and camera."""
    split = "train" if plan and name in plan.train else "test" if plan and name in plan.test else "-"
    mask_dirs = ("mask",) if (root / "mask").is_dir() else ()
    layout = SequenceLayout(root, "smplx-fit", None, mask_dirs, False, False, False, False)
    report = SubjectReport(name=name, split=split, layout=layout)
    try:
        cameras = rp.read_cameras_json(root / rp.CAMERAS_FILE)
        mismatch = rp.check_camera_count(root, cameras)
        if mismatch is not None:
            problems.append(mismatch)
        fit = rp.read_smpl_fit(root / rp.SMPL_FIT)
        if body is None:
            return report
        source, target = (plan or _NO_PLAN).cameras_of(len(cameras))
        source = [c for c in source if c < len(cameras)]
        target = [c for c in target if c < len(cameras)]
        frames = select_frames(fit.num_frames)
        report.num_frames = len(frames)
        options = ReadOptions(config.mask_mode if config.mask_mode != "mask_cihp" else "mask", config.image_scale)
        cams = [c for c in range(len(cameras)) if (root / "img" / cameras.names[c]).is_dir()]
        record_split = "test" if split == "test" else "train"
        report.record = rp.read_subject(
            root, name, record_split, cameras, fit, body, source, target, frames, cams, options, problems=problems
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
    rp.KEYPOINT_SOURCE: "smpl-proj",
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
            {"new_params": "new", "params": "yes", "smplx-fit": "smplx"}.get(layout.params_dir or "", "none"),
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
