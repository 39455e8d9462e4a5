"""Dataparser for ZJU-MoCap (Neural Body layout) and for the synthetic data written in the same layout.

The outputs list the target views of a split; the one `HumanCatalog` of every selected subject (train and
test) rides in their metadata, so a model finds the source views of any (subject, frame) through it. Everything
stays in world metres: no re-centring or scaling.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Dict, List, Literal, Optional, Sequence, Tuple, Type, Union

import numpy as np
import torch
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.data.dataparsers.base_dataparser import DataParser, DataParserConfig, DataparserOutputs
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.utils.rich_utils import CONSOLE
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from nerfstudio_humanfeat.camera_utils import cameras_from_opencv
from nerfstudio_humanfeat.data.catalog import HumanCatalog, HumanDataError, MaskMode, SubjectRecord, ViewLoader
from nerfstudio_humanfeat.data.view_cache import DiskViewCache
from nerfstudio_humanfeat.data.world import centre_catalog, dataparser_transform
from nerfstudio_humanfeat.data.zju_io import (
    Annots,
    BackgroundOptions,
    ReadOptions,
    load_annots,
    load_view,
    read_subject,
    select_frames,
)

GHNERF_TRAIN: Tuple[str, ...] = (
    "CoreView_315",
    "CoreView_377",
    "CoreView_387",
    "CoreView_390",
    "CoreView_393",
    "CoreView_394",
)
GHNERF_TEST: Tuple[str, ...] = ("CoreView_313", "CoreView_386")
GHNERF_FRAME_END = 600
SPLITS_FILE = "splits.json"
DEFAULT_MASK_DILATION = 5
"""Pixels by which a mask is dilated before the background is zeroed when nothing says otherwise (ENeRF's)."""


@dataclass(frozen=True)
class PaperSplit:
    """A paper's split, used without splits.json on the subjects it names that are present."""

    label: str
    train: Tuple[str, ...]
    test: Tuple[str, ...]
    frame_end: Optional[int] = None
    frame_stride: int = 1
    source_cameras: Optional[Tuple[int, ...]] = None
    """None: the even cameras."""
    target_cameras: Optional[Tuple[int, ...]] = None
    """None: the odd cameras, or every camera that is not a source with `targets_are_rest`."""
    targets_are_rest: bool = False


GHNERF_SPLIT = PaperSplit("GHNeRF defaults", GHNERF_TRAIN, GHNERF_TEST, frame_end=GHNERF_FRAME_END)

View = Tuple[int, int]
"""(frame key, camera index) of one view."""


@dataclass
class ZJUMocapDataParserConfig(DataParserConfig):
    """ZJU-MoCap layout: subjects, frames and source/target cameras of a generalizable human NeRF."""

    _target: Type = field(default_factory=lambda: ZJUMocap)
    data: Path = Path("data/zju_mocap")
    """Root holding one folder per sequence (any folder with an annots.npy) and optionally splits.json."""
    subjects_train: Optional[Tuple[str, ...]] = None
    """Training subjects (sequence folder names); None: splits.json's, else GHNeRF's (CoreView_315, 377, 387,
    390, 393, 394 among those present)."""
    subjects_test: Optional[Tuple[str, ...]] = None
    """Held-out subjects; None: splits.json, else GHNeRF's (CoreView_313, 386)."""
    source_cameras: Optional[Tuple[int, ...]] = None
    """Camera indices (into annots.npy's lists) of the source views; None: splits.json, else the even ones."""
    target_cameras: Optional[Tuple[int, ...]] = None
    """Camera indices of the target views; None: splits.json, else the odd ones."""
    frame_start: Optional[int] = None
    """First frame (position in annots['ims']); None: splits.json, else 0."""
    frame_end: Union[int, None, Literal["auto"]] = "auto"
    """End frame, exclusive; None: all frames; 'auto': splits.json, else 600 (GHNeRF's first 600 frames)."""
    frame_stride: Optional[int] = None
    """Frame step; None: splits.json, else 1."""
    image_scale: Optional[float] = None
    """Output/original resolution; None: 0.5 for originals of 1024 px or more (ZJU: 1024 -> 512), else 1.0."""
    mask_mode: MaskMode = "union"
    """Foreground mask: 'mask', 'mask_cihp', their 'union' (KeypointNeRF), or 'none' (all foreground)."""
    background: Literal["black", "keep"] = "black"
    """Image pixels outside the dilated foreground mask: 'black' (zeroed in targets and sources, as the ZJU-MoCap
    loaders of ENeRF, Neural Body and KeypointNeRF do) or 'keep' (the capture as is)."""
    background_mask_dilation: Optional[int] = None
    """Pixels the mask is dilated by before the background is zeroed (ENeRF: 5; Neural Body, KeypointNeRF: 0); None:
    splits.json's ``mask_dilation`` (the synthetic generator writes 0: its masks are exact), else 5."""
    bbox_padding: float = 0.05
    """Metres added around each frame's SMPL vertices for its box (Neural Body, KeypointNeRF: 0.05)."""
    train_targets: Literal["target", "all"] = "target"
    """Training views: the target cameras of the training subjects, or all their cameras."""
    eval_subjects: Literal["test", "train"] = "test"
    """Subjects whose target views are evaluated: the held-out ones, or the training ones (an overfitting check,
    e.g. one subject and frame with every camera a source and a target)."""
    eval_max_views: Optional[int] = None
    """At most this many evaluation views, evenly spread over the held-out views; None: all."""
    novel_pose: bool = False
    """Evaluation also renders novel poses (AniPixel's protocol): every evaluated frame but the observation frame,
    seen by the target cameras, is rendered from the source views of the observation frame, its SMPL pose driving
    the render. ns-eval reports these apart (novel_pose/...) for animatable methods."""
    novel_pose_observation_frame: int = 0
    """Index, among each evaluated subject's selected frames, of the frame whose images condition the novel poses."""
    novel_pose_stride: int = 1
    """Every this many of the other frames is a novel-pose target."""
    cache_gb: float = 2.0
    """Memory for decoded views shared by all splits."""
    view_copies: Optional[Path] = None
    """Folder for pre-undistorted copies of the views at the output scale (lossless PNG, background masked, mask as
    alpha), written on a view's first load and read afterwards: long runs then skip JPEG decoding, undistortion,
    resizing and the mask union. None: decode the originals whenever a view leaves the memory cache."""
    smpl_model: Optional[Path] = None
    """SMPL model pickle, or a folder holding SMPL_NEUTRAL.pkl, for the methods that pose bodies; None:
    $HUMANFEAT_SMPL_MODEL, else <data>/body_model/SMPL_NEUTRAL.pkl (what the synthetic generator writes)."""
    center_subjects: bool = True
    """Translate the world so that the mean centre of the frames' body boxes is the origin (nerfstudio's centring;
    the translation is written to dataparser_transforms.json, exports are in the dataset's world). The scale stays
    1: the methods are metric (SMPL, keypoint encodings in metres, MPJPE in mm)."""


@dataclass
class SplitPlan:
    """Subjects, cameras and frames resolved from the config, splits.json and the GHNeRF defaults."""

    train: List[str]
    test: List[str]
    source_cameras: Optional[List[int]]
    """None: the even cameras of each subject."""
    target_cameras: Optional[List[int]]
    """None: the odd cameras of each subject."""
    frame_start: int
    frame_end: Optional[int]
    frame_stride: int
    origin: str
    """Where the subjects came from: 'config', 'splits.json', 'GHNeRF defaults', 'none' (no split), or a mix."""
    targets_are_rest: bool = False
    """Without target cameras: every camera that is not a source (RenderPeople), instead of the odd ones."""

    def cameras_of(self, num_cameras: int) -> Tuple[List[int], List[int]]:
        """(source, target) camera indices of a subject with `num_cameras` cameras."""
        source = self.source_cameras if self.source_cameras is not None else list(range(0, num_cameras, 2))
        if self.target_cameras is not None:
            target = self.target_cameras
        elif self.targets_are_rest:
            target = [c for c in range(num_cameras) if c not in set(source)]
        else:
            target = list(range(1, num_cameras, 2))
        return list(source), list(target)


def find_sequences(root: Path) -> Dict[str, Path]:
    """Sequence name -> folder, for every folder up to two levels below `root` holding an annots.npy."""
    if not root.is_dir():
        raise HumanDataError(f"{root}: data root not found (expected a folder of ZJU-MoCap sequences)")
    found = {}
    for annots in sorted([*root.glob("*/annots.npy"), *root.glob("*/*/annots.npy")]):
        found[annots.parent.relative_to(root).as_posix()] = annots.parent
    return found


def read_splits_json(path: Path) -> Dict:
    """The validated contents of a splits.json (docs/data_format.md)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise HumanDataError(
            f"{path}: cannot read the split file (expected a JSON object with train_subjects, test_subjects): {err}"
        ) from err
    if not isinstance(data, dict):
        raise HumanDataError(f"{path}: expected a JSON object with train_subjects and test_subjects")
    for key in ("train_subjects", "test_subjects", "source_cameras", "target_cameras"):
        value = data.get(key)
        if value is not None and not isinstance(value, list):
            raise HumanDataError(f"{path}: '{key}' must be a list, found {type(value).__name__}")
    frames = data.get("frames") or {}
    if not isinstance(frames, dict):
        raise HumanDataError(f"{path}: 'frames' must be an object with start, end, stride")
    dilation = data.get("mask_dilation", 0)
    if isinstance(dilation, bool) or not isinstance(dilation, int) or dilation < 0:
        raise HumanDataError(f"{path}: 'mask_dilation' must be a whole number of pixels >= 0, found {dilation!r}")
    return data


def resolve_split(
    config: ZJUMocapDataParserConfig, sequences: Dict[str, Path], paper: PaperSplit = GHNERF_SPLIT
) -> SplitPlan:
    """Subjects, cameras and frame range: the config's values, else splits.json's, else the paper's (GHNeRF's on
    ZJU names)."""
    splits_path = config.data / SPLITS_FILE
    splits = read_splits_json(splits_path) if splits_path.is_file() else {}
    frames = splits.get("frames") or {}
    train, test, origin = _subjects(config, splits, sequences, paper)
    for name in train + test:
        if name not in sequences and (config.data / name).is_dir():
            load_annots(config.data / name / "annots.npy")  # raises, naming the missing or broken file
        if name not in sequences:
            available = ", ".join(sequences) or "none"
            raise HumanDataError(
                f"{config.data / name}: subject '{name}' of the split ({origin}) not found; sequences: {available}"
            )
    both = sorted(set(train) & set(test))
    if both:
        raise HumanDataError(f"{config.data}: subjects {both} are both training and test subjects")
    source = config.source_cameras if config.source_cameras is not None else splits.get("source_cameras")
    target = config.target_cameras if config.target_cameras is not None else splits.get("target_cameras")
    if not splits:
        source = source if source is not None else paper.source_cameras
        target = target if target is not None else paper.target_cameras
    if config.frame_end != "auto":
        frame_end = config.frame_end
    else:
        frame_end = frames["end"] if "end" in frames else (None if splits else paper.frame_end)
    stride = config.frame_stride if config.frame_stride is not None else frames.get("stride")
    if stride is None:
        stride = 1 if splits else paper.frame_stride
    return SplitPlan(
        train=train,
        test=test,
        source_cameras=None if source is None else [int(c) for c in source],
        target_cameras=None if target is None else [int(c) for c in target],
        frame_start=int(config.frame_start if config.frame_start is not None else frames.get("start") or 0),
        frame_end=None if frame_end is None else int(frame_end),
        frame_stride=int(stride),
        origin=origin,
        targets_are_rest=paper.targets_are_rest and not splits,
    )


def _subjects(
    config: ZJUMocapDataParserConfig, splits: Dict, sequences: Dict[str, Path], paper: PaperSplit = GHNERF_SPLIT
) -> Tuple[List[str], List[str], str]:
    """Training and test subjects; a list not set in the config comes from splits.json, else the paper's split."""
    train, test = config.subjects_train, config.subjects_test
    if train is not None and test is not None:
        return list(train), list(test), "config"
    if splits:
        default_train, default_test = splits.get("train_subjects") or [], splits.get("test_subjects") or []
        origin = SPLITS_FILE
    else:
        default_train = [n for n in paper.train if n in sequences]
        default_test = [n for n in paper.test if n in sequences]
        origin = paper.label if default_train or default_test else "none"
        missing = [n for n in paper.train + paper.test if n not in sequences]
        if origin != "none" and missing:
            warning = f"Warning: {config.data}: {paper.label} split without {', '.join(missing)} (not found)"
            CONSOLE.print(warning, style="yellow", markup=False, soft_wrap=True)
    if train is not None:  # the default for the other list leaves out the subjects named here
        return list(train), [n for n in default_test if n not in train], f"config and {origin}"
    if test is not None:
        return [n for n in default_train if n not in test], list(test), f"config and {origin}"
    return list(default_train), list(default_test), origin


def split_views(
    catalog: HumanCatalog,
    split: str,
    train_targets: str,
    eval_max_views: Optional[int],
    eval_subjects: Literal["test", "train"] = "test",
) -> List[View]:
    """(frame key, camera) of the views of a split: training subjects' targets, or the evaluated subjects' targets
    (held-out subjects, or the training subjects themselves for an overfitting check)."""
    if split not in ("train", "val", "test"):
        raise ValueError(f"unknown split {split!r} (expected train, val or test)")
    wanted = "train" if split == "train" else eval_subjects
    views: List[View] = []
    for key in catalog.frame_keys_of_split(wanted):
        subject = catalog.subject(key)
        every = wanted == "train" and train_targets == "all"
        cameras = range(len(subject.rig)) if every else subject.target_cameras
        views.extend((key, camera) for camera in cameras)
    if split != "train" and eval_max_views is not None:
        views = spread(views, eval_max_views)
    return views


def spread(items: List, count: int) -> List:
    """At most `count` items, evenly spread over the list."""
    if len(items) <= count:
        return items
    picks = np.unique(np.linspace(0, len(items) - 1, max(count, 1)).round().astype(int))
    return [items[i] for i in picks]


def novel_pose_views(
    catalog: HumanCatalog,
    eval_subjects: Literal["test", "train"] = "test",
    observation_frame: int = 0,
    stride: int = 1,
    max_views: Optional[int] = None,
) -> Tuple[List[View], List[int]]:
    """Novel-pose evaluation views and their source frame keys: each evaluated subject's frames other than the
    observation frame (every `stride`-th), at its target cameras, conditioned on the observation frame's images."""
    views: List[View] = []
    sources: List[int] = []
    for subject_index, subject in enumerate(catalog.subjects):
        if subject.split != eval_subjects or len(subject.frames) < 2:
            continue
        if not 0 <= observation_frame < len(subject.frames):
            raise HumanDataError(
                f"{subject.root}: novel-pose observation frame {observation_frame} out of range: "
                f"{len(subject.frames)} frames are selected"
            )
        observed = catalog.frame_key(subject_index, observation_frame)
        others = [f for f in range(len(subject.frames)) if f != observation_frame][:: max(stride, 1)]
        for frame in others:
            key = catalog.frame_key(subject_index, frame)
            views.extend((key, camera) for camera in subject.target_cameras)
            sources.extend(observed for _ in subject.target_cameras)
    if max_views is not None:
        picked = spread(list(range(len(views))), max_views)
        views, sources = [views[i] for i in picked], [sources[i] for i in picked]
    return views, sources


def cameras_of_views(
    catalog: HumanCatalog, views: Sequence[View], source_frame_keys: Optional[Sequence[int]] = None
) -> Cameras:
    """nerfstudio cameras (OpenGL c2w, output intrinsics, times, frame key and camera index; the source frame key
    where given) of views."""
    rigs = [catalog.subject(key).rig for key, _ in views]
    intrinsics = torch.stack([rig.intrinsics[c] for rig, (_, c) in zip(rigs, views)])
    world_to_camera = torch.stack([rig.world_to_camera[c] for rig, (_, c) in zip(rigs, views)])
    keys = torch.tensor([[key] for key, _ in views], dtype=torch.long)
    metadata = {"frame_key": keys, "camera_index": torch.tensor([[c] for _, c in views], dtype=torch.long)}
    if source_frame_keys is not None:
        metadata["source_frame_key"] = torch.tensor([[k] for k in source_frame_keys], dtype=torch.long)
    return cameras_from_opencv(
        intrinsics,
        world_to_camera,
        height=torch.tensor([[rig.height] for rig in rigs], dtype=torch.long),
        width=torch.tensor([[rig.width] for rig in rigs], dtype=torch.long),
        times=torch.tensor([[catalog.time_of(key)] for key, _ in views], dtype=torch.float32),
        metadata=metadata,
    )


@dataclass
class ZJUMocap(DataParser):
    """ZJU-MoCap dataparser; builds the catalog of all selected subjects once per instance."""

    config: ZJUMocapDataParserConfig
    includes_time: bool = True
    name = "zju-mocap"
    """The registered name, in messages."""
    paper: PaperSplit = GHNERF_SPLIT
    """The split used without splits.json or subjects in the config."""

    def __init__(self, config: ZJUMocapDataParserConfig):
        super().__init__(config=config)
        self.config = config
        self._catalog: Optional[HumanCatalog] = None
        self.plan: Optional[SplitPlan] = None

    @property
    def catalog(self) -> HumanCatalog:
        """Every selected subject (train and test), shared by all splits."""
        if self._catalog is None:
            catalog = self._build_catalog()
            self._catalog = centre_catalog(catalog) if self.config.center_subjects else catalog
        return self._catalog

    def find_sequences(self) -> Dict[str, Path]:
        """Subject name -> sequence folder (holding annots.npy)."""
        return find_sequences(self.config.data)

    def select_frames(self, name: str, annots: Annots) -> List[int]:
        """Positions in annots['ims'] of a subject's selected frames."""
        assert self.plan is not None
        return select_frames(annots.num_frames, self.plan.frame_start, self.plan.frame_end, self.plan.frame_stride)

    def finish_subject(self, subject: SubjectRecord) -> SubjectRecord:
        """A hook for layouts that add to a subject read from annots.npy."""
        return subject

    def _build_catalog(self) -> HumanCatalog:
        sequences = self.find_sequences()
        plan = self.plan = resolve_split(self.config, sequences, self.paper)
        if not sequences:
            entries = ", ".join(sorted(p.name for p in self.config.data.iterdir())[:20]) or "nothing"
            raise HumanDataError(f"{self.config.data}: no sequence (no folder holding an annots.npy); found: {entries}")
        if not plan.train and not plan.test:
            raise HumanDataError(
                f"{self.config.data}: no {SPLITS_FILE} and none of the sequences of the {self.paper.label} split "
                f"({', '.join(self.paper.train + self.paper.test)}); sequences found: {', '.join(sequences)}. "
                "Write a splits.json or pass --subjects-train/--subjects-test."
            )
        jobs = [(name, "train") for name in plan.train] + [(name, "test") for name in plan.test]
        annots = {name: load_annots(sequences[name] / "annots.npy") for name, _ in jobs}
        frames = {name: self.select_frames(name, a) for name, a in annots.items()}
        options = ReadOptions(self.config.mask_mode, self.config.image_scale, self.config.bbox_padding)
        subjects: List[SubjectRecord] = []
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=CONSOLE, transient=True) as progress:
            task = progress.add_task("Reading sequences", total=sum(len(f) for f in frames.values()))
            for name, split in jobs:
                progress.update(task, description=f"Reading {name} ({split})")
                subject = self._read(annots[name], name, split, frames[name], options, progress, task)
                subjects.append(self.finish_subject(subject))
        CONSOLE.print(
            f"[bold]{self.name}[/bold]: {len(subjects)} subjects ({plan.origin}), "
            f"{sum(len(s.frames) for s in subjects)} frames"
        )
        return HumanCatalog(
            subjects,
            view_loader=view_reader(self.config),
            cache_bytes=int(self.config.cache_gb * 1024**3),
            bbox_padding=self.config.bbox_padding,
            smpl_model=self.config.smpl_model,
            data_root=self.config.data,
        )

    def _read(
        self,
        annots: Annots,
        name: str,
        split: Literal["train", "test"],
        frames: List[int],
        options: ReadOptions,
        progress: Progress,
        task,
    ) -> SubjectRecord:
        assert self.plan is not None
        source, target = self.plan.cameras_of(annots.num_cameras)
        every = split == "train" and self.config.train_targets == "all"
        views = range(annots.num_cameras) if every else sorted(set(source) | set(target))
        return read_subject(
            annots,
            split,
            source,
            target,
            frames,
            list(views),
            options,
            advance=lambda: progress.advance(task),
            name=name,
        )

    def _generate_dataparser_outputs(self, split: str = "train", **kwargs) -> DataparserOutputs:
        return human_dataparser_outputs(self.catalog, self.config, split)


def background_options(config: ZJUMocapDataParserConfig) -> BackgroundOptions:
    """The config's background handling, its mask dilation resolved (config, else splits.json, else ENeRF's)."""
    dilation = config.background_mask_dilation
    if dilation is None:
        path = Path(config.data) / SPLITS_FILE
        dilation = (read_splits_json(path) if path.is_file() else {}).get("mask_dilation", DEFAULT_MASK_DILATION)
    return BackgroundOptions(config.background, int(dilation))


def view_reader(config: ZJUMocapDataParserConfig) -> ViewLoader:
    """Decodes one view as the config says (background, dilation), through ``view_copies`` when set."""
    background = background_options(config)
    reader = partial(load_view, background=background)
    if config.view_copies is None:
        return reader
    settings = f"{background.background}-d{background.mask_dilation}-{config.mask_mode}"
    return DiskViewCache(Path(config.view_copies), reader, settings)


def human_dataparser_outputs(catalog: HumanCatalog, config: ZJUMocapDataParserConfig, split: str) -> DataparserOutputs:
    """The views of a split as nerfstudio dataparser outputs, the catalog and the per-view protocol in metadata:
    'novel_view' (a frame rendered from its own source views) or, with ``novel_pose``, 'novel_pose'."""
    views = split_views(catalog, split, config.train_targets, config.eval_max_views, config.eval_subjects)
    if not views:
        wanted = "training" if split == "train" else "held-out"
        names = [s.name for s in catalog.subjects]
        raise HumanDataError(f"{config.data}: split '{split}' has no view: no {wanted} subject among {names}")
    source_keys = [key for key, _ in views]
    protocols = ["novel_view"] * len(views)
    if split != "train" and config.novel_pose:
        pose_views, pose_sources = novel_pose_views(
            catalog,
            config.eval_subjects,
            config.novel_pose_observation_frame,
            config.novel_pose_stride,
            config.eval_max_views,
        )
        views, source_keys = views + pose_views, source_keys + pose_sources
        protocols += ["novel_pose"] * len(pose_views)
    boxes = torch.stack([catalog.frame(key).bbox for key in sorted({key for key, _ in views})])
    return DataparserOutputs(
        image_filenames=[catalog.frame(key).image_paths[camera] for key, camera in views],
        cameras=cameras_of_views(catalog, views, source_keys),
        scene_box=SceneBox(aabb=torch.stack([boxes[:, 0].min(0).values, boxes[:, 1].max(0).values])),
        dataparser_scale=1.0,
        dataparser_transform=dataparser_transform(catalog),
        metadata={"catalog": catalog, "views": views, "source_frame_keys": source_keys, "protocols": protocols},
    )
