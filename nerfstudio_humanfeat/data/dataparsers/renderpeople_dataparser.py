"""Dataparser for RenderPeople in SHERF's layout (`<subject>/img/camera0000/0000.jpg`, cameras.json, smplx fits).

Defaults follow SHERF: 36 views, observation (source) views 0, 16 and 31, every other view a target; subjects from
`human_list.txt`, lines 0-449 training and 450-479 test (a shorter list: the same 15/16 proportion, at least one test
subject); 10 poses at interval 2 (frames 0, 2, ..., 18). A splits.json at the root (synthetic data) overrides the
subjects, cameras and frames, as for zju-mocap. The SMPL fits are converted to the ZJU convention, and the 2D/3D
keypoint targets are the fits' SMPL joints (BODY_25), projected: RenderPeople has no keypoints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Dict, List, Literal, Optional, Tuple, Type, Union

from nerfstudio.utils.rich_utils import CONSOLE
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from nerfstudio_humanfeat.body.smpl import SMPLBody, resolve_smpl_model
from nerfstudio_humanfeat.data import renderpeople_io as rp
from nerfstudio_humanfeat.data.catalog import HumanCatalog, HumanDataError, MaskMode, SubjectRecord
from nerfstudio_humanfeat.data.dataparsers.zju_mocap_dataparser import (
    SPLITS_FILE,
    PaperSplit,
    ZJUMocap,
    ZJUMocapDataParserConfig,
    background_options,
    resolve_split,
)
from nerfstudio_humanfeat.data.zju_io import ReadOptions, load_view, select_frames

SHERF_FRAME_END = 20
SHERF_FRAME_STRIDE = 2
"""SHERF trains on 10 poses at interval 2."""


def sherf_paper_split(root: Path, subjects: Dict[str, Path]) -> PaperSplit:
    """SHERF's split: human_list.txt's training and test lines (proportional for a shorter list); without the list,
    the subject folders in name order."""
    list_path = root / rp.HUMAN_LIST
    names = rp.read_human_list(list_path) if list_path.is_file() else sorted(subjects)
    train, test = rp.sherf_split(names)
    label = f"SHERF defaults ({rp.HUMAN_LIST})" if list_path.is_file() else "SHERF defaults (no human_list.txt)"
    return PaperSplit(
        label,
        tuple(train),
        tuple(test),
        frame_end=SHERF_FRAME_END,
        frame_stride=SHERF_FRAME_STRIDE,
        source_cameras=rp.OBSERVATION_VIEWS,
        targets_are_rest=True,
    )


@dataclass
class RenderPeopleDataParserConfig(ZJUMocapDataParserConfig):
    """RenderPeople (SHERF layout): per subject img/, mask/, cameras.json, outputs_re_fitting/refit_smpl_2nd.npz."""

    _target: Type = field(default_factory=lambda: RenderPeople)
    data: Path = Path("data/renderpeople")
    """Root holding one folder per subject, human_list.txt (and optionally splits.json)."""
    subjects_train: Optional[Tuple[str, ...]] = None
    """Training subjects; None: splits.json's, else human_list.txt lines 0-449 (proportional for fewer)."""
    subjects_test: Optional[Tuple[str, ...]] = None
    """Held-out subjects; None: splits.json's, else human_list.txt lines 450-479 (proportional for fewer)."""
    source_cameras: Optional[Tuple[int, ...]] = None
    """Camera indices of the source views; None: splits.json's, else 0, 16, 31 (SHERF's observation views)."""
    target_cameras: Optional[Tuple[int, ...]] = None
    """Camera indices of the target views; None: splits.json's, else every camera that is not a source."""
    frame_end: Union[int, None, Literal["auto"]] = "auto"
    """End frame (index into the SMPL fit), exclusive; None: all; 'auto': splits.json's, else 20."""
    frame_stride: Optional[int] = None
    """Frame step; None: splits.json's, else 2 (SHERF's 10 poses at interval 2)."""
    mask_mode: MaskMode = "mask"
    """Foreground mask: mask (the only one RenderPeople has) or none."""


class RenderPeople(ZJUMocap):
    """RenderPeople dataparser; the catalog is the same as zju-mocap's, read from SHERF's files."""

    config: RenderPeopleDataParserConfig
    name = "renderpeople"

    def find_sequences(self) -> Dict[str, Path]:
        return rp.find_subjects(self.config.data)

    def _build_catalog(self) -> HumanCatalog:
        config = self.config
        subjects = self.find_sequences()
        if not subjects:
            raise HumanDataError(f"{config.data}: no RenderPeople subject (no folder holding cameras.json or img/)")
        self.paper = sherf_paper_split(config.data, subjects)
        plan = self.plan = resolve_split(config, subjects, self.paper)
        if not plan.train and not plan.test:
            raise HumanDataError(
                f"{config.data}: no subject selected ({plan.origin}); subjects found: {', '.join(subjects)}. "
                f"Write a {SPLITS_FILE} or pass --subjects-train/--subjects-test."
            )
        body_path = resolve_smpl_model(config.smpl_model, config.data)
        body = SMPLBody.from_file(body_path)
        CONSOLE.print(
            f"{self.name}: no keypoints in RenderPeople: 2D/3D keypoint targets are the SMPL joints of the fits "
            f"(BODY_25), projected (body model {body_path})",
            markup=False,
            soft_wrap=True,
        )
        jobs = [(name, "train") for name in plan.train] + [(name, "test") for name in plan.test]
        options = ReadOptions(config.mask_mode, config.image_scale, config.bbox_padding)
        records: List[SubjectRecord] = []
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=CONSOLE, transient=True) as progress:
            task = progress.add_task("Reading subjects", total=len(jobs))
            for name, split in jobs:
                progress.update(task, description=f"Reading {name} ({split})")
                records.append(self.read_subject(subjects[name], name, split, body, options))
                progress.advance(task)
        CONSOLE.print(
            f"[bold]{self.name}[/bold]: {len(records)} subjects ({plan.origin}), "
            f"{sum(len(s.frames) for s in records)} frames"
        )
        return HumanCatalog(
            records,
            view_loader=partial(load_view, background=background_options(config)),
            cache_bytes=int(config.cache_gb * 1024**3),
            bbox_padding=config.bbox_padding,
            smpl_model=config.smpl_model,
            data_root=config.data,
        )

    def read_subject(self, root: Path, name: str, split: str, body: SMPLBody, options: ReadOptions) -> SubjectRecord:
        """One subject's record with this parser's cameras and frames."""
        assert self.plan is not None
        cameras = rp.read_cameras_json(root / rp.CAMERAS_FILE)
        mismatch = rp.check_camera_count(root, cameras)
        if mismatch is not None:
            raise mismatch
        fit = rp.read_smpl_fit(root / rp.SMPL_FIT)
        source, target = self.plan.cameras_of(len(cameras))
        every = split == "train" and self.config.train_targets == "all"
        views = list(range(len(cameras))) if every else sorted(set(source) | set(target))
        frames = select_frames(fit.num_frames, self.plan.frame_start, self.plan.frame_end, self.plan.frame_stride)
        warning = rp.mask_mode_warning(root, options.mask_mode)
        if warning:
            CONSOLE.print(f"Warning: {warning}", style="yellow", markup=False, soft_wrap=True)
        return rp.read_subject(root, name, split, cameras, fit, body, source, target, frames, views, options)
