"""The generalizable data manager: each batch is one target view of one (subject, frame) plus its source views.

Rays carry everything a model needs to condition itself (in ``RayBundle.metadata``): the frame key, the
target camera, the target pixel and the chosen source cameras. Full-image evaluation hands out nerfstudio
``Cameras`` whose metadata holds the frame key; the model then picks the nearest source views itself.
"""

from __future__ import annotations

import random
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from typing import Dict, Iterator, List, Literal, Optional, Tuple, Type, Union

import torch
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.datamanagers.base_datamanager import DataManager, VanillaDataManagerConfig
from nerfstudio.utils.rich_utils import CONSOLE

from nerfstudio_humanfeat.data.catalog import HumanCatalog
from nerfstudio_humanfeat.data.dataparsers import HumanDataParserConfig, ZJUMocapDataParserConfig
from nerfstudio_humanfeat.data.datasets.human_dataset import HumanViewDataset
from nerfstudio_humanfeat.data.ray_sampling import (
    sample_patches,
    sample_patches_around,
    sample_pixels_near_joints,
    sample_view_pixels,
)
from nerfstudio_humanfeat.keypoints import heatmap_targets, keypoint_valid
from nerfstudio_humanfeat.metrics import enerf_bbox_mask


@dataclass
class HumanDataManagerConfig(VanillaDataManagerConfig):
    """Target-view batches with source views for generalizable human NeRFs.

    It extends VanillaDataManagerConfig only so that nerfstudio's tools that expect one (ns-render dataset)
    accept it; the vanilla pixel-sampler options it inherits are unused.
    """

    _target: Type = field(default_factory=lambda: HumanDataManager)
    dataparser: HumanDataParserConfig = field(default_factory=ZJUMocapDataParserConfig)
    """zju-mocap (default), human36m or renderpeople: a subcommand after the other options, its own options after it
    (`ns-train ghnerf --data <root> human36m --pipeline.datamanager.dataparser.eval-max-views 2`)."""
    train_num_rays_per_batch: int = 1024
    """Rays per training step (one target view per step), ``foreground_ratio`` of them on the person; the patches
    of ``num_patches`` come in addition (ENeRF: 4096 rays plus 4 patches of 64x64 for the perceptual loss)."""
    eval_num_rays_per_batch: int = 1024
    foreground_ratio: float = 0.75
    """Share of the rays drawn on the foreground mask; the rest anywhere in the subject's box mask."""
    joint_ray_ratio: float = 0.0
    """Share of the training rays drawn around the target view's visible 2D joints (Gaussian offsets of std
    ``2 * heatmap_sigma``), the rest as ``foreground_ratio`` says. Not in the papers: uniform rays put few samples
    where the heatmap targets are non-zero, so the heatmap heads see each joint's peak rarely (issue-8 note)."""
    num_patches: int = 0
    """Square patches per step for the perceptual loss (ENeRF: 4 of 64x64 at 512 px); 0 disables them."""
    perceptual_patch_size: int = 32
    """Side of those patches, in pixels."""
    patch_placement: Literal["box", "foreground"] = "box"
    """Where patches lie: anywhere in the bounding rectangle of the subject's box mask (ENeRF), or centred on a
    random foreground pixel (KeypointNeRF)."""
    train_num_source_views: Tuple[int, int] = (2, 3)
    """Fewest and most source views of a training step (ENeRF/GHNeRF: 2-3)."""
    source_sampling: Literal["enerf", "nearest"] = "enerf"
    """Source views of a training step: 'enerf' (ENeRF's code: the most views with probability
    ``more_sources_probability``, else the fewest, drawn at random from the nearest ones plus one, the target view
    itself among them with probability ``target_as_source_probability``) or 'nearest' (a count drawn uniformly in
    [fewest, most], the nearest that many)."""
    more_sources_probability: float = 0.1
    target_as_source_probability: float = 0.05
    heatmap_sigma: float = 3.0
    """Standard deviation of the Gaussian joint heatmap targets, in output pixels."""
    box_padding: float = 0.0
    """Extra padding (m) of the frame's box (already padded by the dataparser) where rays are sampled."""
    training_eval_views: int = 16
    """Held-out views evaluated by the periodic full evaluation during training (evenly spread, the same each time);
    ns-eval evaluates them all."""
    prefetch: bool = True
    """Prepare the next training batch (image decoding, ray sampling, targets) in a worker thread during a step."""
    seed: int = 42


class FixedViewLoader:
    """Iterates (camera, batch) over a fixed list of dataset views, as ns-eval expects."""

    def __init__(self, manager: "HumanDataManager", dataset: HumanViewDataset, indices: List[int]):
        self.manager, self.dataset, self.indices = manager, dataset, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[Tuple[Cameras, Dict]]:
        for index in self.indices:
            yield self.manager.image_batch(self.dataset, index)


class HumanDataManager(DataManager):
    """Samples (subject, frame, target camera) per step; every rank draws from its own subjects."""

    config: HumanDataManagerConfig
    train_dataset: HumanViewDataset
    eval_dataset: HumanViewDataset

    def __init__(
        self,
        config: HumanDataManagerConfig,
        device: Union[torch.device, str] = "cpu",
        test_mode: Literal["test", "val", "inference"] = "val",
        world_size: int = 1,
        local_rank: int = 0,
        **kwargs,
    ):
        self.config = config
        self.device = device
        self.world_size = world_size
        self.local_rank = local_rank
        self.test_mode = test_mode
        self.includes_time = True
        if config.data is not None:
            config.dataparser.data = config.data
        self.dataparser = config.dataparser.setup()
        self.train_dataparser_outputs = self.dataparser.get_dataparser_outputs(split="train")
        eval_split = "val" if test_mode == "val" else "test"
        self.train_dataset = HumanViewDataset(self.train_dataparser_outputs)
        self.eval_dataset = HumanViewDataset(self.dataparser.get_dataparser_outputs(split=eval_split))
        self._rng = random.Random(config.seed + local_rank)
        self._torch_rng = torch.Generator().manual_seed(config.seed + local_rank)
        # Evaluation draws its own numbers: the training draws run in the prefetch thread, in order.
        self._eval_rng = random.Random(config.seed + local_rank + 1)
        self._eval_torch_rng = torch.Generator().manual_seed(config.seed + local_rank + 1)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="humanfeat-batches")
        self._next_batch: Optional[Future] = None
        super().__init__()

    @property
    def catalog(self) -> HumanCatalog:
        return self.train_dataset.catalog

    def setup_train(self) -> None:
        views = self.train_dataset.views
        subjects = sorted({self.catalog.frame_keys[fk][0] for fk, _ in views})
        mine = set(subjects[self.local_rank :: self.world_size]) if self.world_size > 1 else set(subjects)
        self.train_indices = [i for i, (fk, _) in enumerate(views) if self.catalog.frame_keys[fk][0] in mine]
        if not self.train_indices:
            raise ValueError(f"rank {self.local_rank} of {self.world_size} has no training subject ({subjects})")
        rank = ""
        if self.world_size > 1:  # which subjects this process trains on (tests/test_two_processes.py reads it)
            names = ", ".join(self.catalog.subjects[i].name for i in sorted(mine))
            rank = f"rank {self.local_rank} of {self.world_size} ({names}): "
        CONSOLE.print(
            f"[bold]humanfeat[/bold]: {rank}{len(self.train_indices)} training views from {len(mine)} subjects; "
            f"{len(self.eval_dataset)} evaluation views"
        )

    def setup_eval(self) -> None:
        if len(self.eval_dataset) == 0:
            raise ValueError("no evaluation views: the split has no test subject with target cameras")

    @cached_property
    def fixed_indices_eval_dataloader(self) -> FixedViewLoader:
        return FixedViewLoader(self, self.eval_dataset, list(range(len(self.eval_dataset))))

    @cached_property
    def training_eval_dataloader(self) -> FixedViewLoader:
        total, count = len(self.eval_dataset), min(self.config.training_eval_views, len(self.eval_dataset))
        return FixedViewLoader(self, self.eval_dataset, [i * total // count for i in range(count)])

    def next_train(self, step: int) -> Tuple[RayBundle, Dict]:
        self.train_count += 1
        if not self.config.prefetch:
            return self.draw_train_batch()
        if self._next_batch is None:
            self._next_batch = self._worker.submit(self.draw_train_batch)
        batch = self._next_batch.result()
        self._next_batch = self._worker.submit(self.draw_train_batch)
        return batch

    def draw_train_batch(self) -> Tuple[RayBundle, Dict]:
        """A random training view's rays and targets (the random draws happen in call order, in one thread)."""
        index = self._rng.choice(self.train_indices)
        frame_key, camera = self.train_dataset.views[index]
        sources = self.training_sources(frame_key, camera)
        return self.ray_batch(self.train_dataset, index, self.config.train_num_rays_per_batch, sources)

    def training_sources(self, frame_key: int, camera: int) -> List[int]:
        """The source cameras of a training view, drawn as ``source_sampling`` says."""
        cfg, rng = self.config, self._rng
        fewest, most = cfg.train_num_source_views
        c2w = self.catalog.subject(frame_key).rig.camera_to_world[camera]
        if cfg.source_sampling == "nearest":
            return self.catalog.nearest_cameras(frame_key, c2w, rng.randint(fewest, most), exclude=[camera])
        num = most if rng.random() < cfg.more_sources_probability else fewest
        available = len([c for c in self.catalog.subject(frame_key).source_cameras if c != camera])
        pool = self.catalog.nearest_cameras(frame_key, c2w, min(num + 1, max(available, num)), exclude=[camera])
        sources = rng.sample(pool, num)
        if rng.random() < cfg.target_as_source_probability:
            sources[rng.randrange(num)] = camera
        return sources

    @cached_property
    def novel_view_eval_indices(self) -> List[int]:
        """Evaluation items that render a frame from its own source views (what every method can render)."""
        return [i for i, p in enumerate(self.eval_dataset.protocols) if p == "novel_view"]

    def next_eval(self, step: int) -> Tuple[RayBundle, Dict]:
        self.eval_count += 1
        index = self._eval_rng.choice(self.novel_view_eval_indices)
        frame_key, camera = self.eval_dataset.views[index]
        c2w = self.catalog.subject(frame_key).rig.camera_to_world[camera]
        sources = self.catalog.nearest_cameras(frame_key, c2w, self.config.train_num_source_views[0], exclude=[camera])
        return self.ray_batch(self.eval_dataset, index, self.config.eval_num_rays_per_batch, sources)

    def next_eval_image(self, step: int) -> Tuple[Cameras, Dict]:
        self.eval_count += 1
        return self.image_batch(self.eval_dataset, self._eval_rng.choice(self.novel_view_eval_indices))

    def get_train_rays_per_batch(self) -> int:
        cfg = self.config
        return cfg.train_num_rays_per_batch + cfg.num_patches * cfg.perceptual_patch_size**2

    def get_eval_rays_per_batch(self) -> int:
        return self.config.eval_num_rays_per_batch

    def get_datapath(self):
        return self.config.dataparser.data

    def get_param_groups(self) -> Dict[str, List[torch.nn.Parameter]]:
        return {}

    def box_mask(self, frame_key: int, camera: int) -> torch.Tensor:
        """Pixels of a view inside the projection of the frame's padded SMPL box."""
        rig = self.catalog.subject(frame_key).rig
        return enerf_bbox_mask(
            self.catalog.frame(frame_key).bbox,
            rig.intrinsics[camera],
            rig.world_to_camera[camera],
            rig.height,
            rig.width,
            padding=self.config.box_padding,
        )

    def ray_batch(
        self, dataset: HumanViewDataset, index: int, num_rays: int, sources: List[int]
    ) -> Tuple[RayBundle, Dict]:
        """Rays of one target view (patches first, row-major, then `num_rays` sampled rays), their targets, and the
        chosen source cameras."""
        frame_key, camera = dataset.views[index]
        view = self.catalog.load_view(frame_key, camera)
        box = self.box_mask(frame_key, camera)
        training = dataset is self.train_dataset
        patches = self.config.num_patches if training else 0
        generator = self._torch_rng if training else self._eval_torch_rng
        parts = []
        if patches > 0:
            size = self.config.perceptual_patch_size
            if self.config.patch_placement == "foreground":
                patch = sample_patches_around(view.mask & box, patches, size, generator)
            else:
                patch = sample_patches(box, patches, size, generator)
            parts.append(patch.reshape(-1, 2))
        num_joint_rays = 0
        if training and self.config.joint_ray_ratio > 0 and view.keypoints2d is not None:
            joints = view.keypoints2d[keypoint_valid(view.keypoints2d), :2]
            height, width = view.mask.shape
            spread = 2.0 * self.config.heatmap_sigma
            num_joint_rays = int(round(num_rays * self.config.joint_ray_ratio)) if joints.shape[0] else 0
            parts.append(sample_pixels_near_joints(joints, num_joint_rays, spread, height, width, generator))
        rest = num_rays - num_joint_rays
        parts.append(sample_view_pixels(box, view.mask, rest, self.config.foreground_ratio, generator))
        yx = torch.cat(parts, dim=0)
        coords = yx.float() + 0.5
        indices = torch.full((yx.shape[0], 1), index, dtype=torch.long)
        ray_bundle = dataset.cameras.generate_rays(camera_indices=indices, coords=coords)
        ray_bundle.metadata.update(
            {
                "frame_key": torch.full((yx.shape[0], 1), frame_key, dtype=torch.long),
                "source_frame_key": torch.full((yx.shape[0], 1), dataset.source_frame_keys[index], dtype=torch.long),
                "target_camera": torch.full((yx.shape[0], 1), camera, dtype=torch.long),
                "source_cameras": torch.tensor(sources, dtype=torch.long).expand(yx.shape[0], -1),
                "pixels": coords.flip(-1),
            }
        )
        y, x = yx[:, 0], yx[:, 1]
        batch = {
            "image": view.pixels(y, x),
            "foreground": view.mask[y, x, None].float(),
            "num_patches": patches,
            "patch_size": self.config.perceptual_patch_size,
            "frame_key": frame_key,
            "target_camera": camera,
        }
        batch.update(self._feature_targets(view, coords.flip(-1), y, x))
        return ray_bundle.to(self.device), _to_device(batch, self.device)

    def image_batch(self, dataset: HumanViewDataset, index: int) -> Tuple[Cameras, Dict]:
        """A whole target view: its camera (with the frame key in its metadata) and full-image targets."""
        frame_key, camera = dataset.views[index]
        view = self.catalog.load_view(frame_key, camera)
        height, width = view.image.shape[:2]
        ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
        pixel_xy = torch.stack([xs, ys], dim=-1).reshape(-1, 2).float() + 0.5
        batch = {
            "image": view.image,
            "foreground": view.mask[..., None].float(),
            "box_mask": self.box_mask(frame_key, camera)[..., None],
            "bbox": self.catalog.frame(frame_key).bbox,
            "frame_key": frame_key,
            "source_frame_key": dataset.source_frame_keys[index],
            "protocol": dataset.protocols[index],
            "target_camera": camera,
            "image_idx": index,
        }
        targets = self._feature_targets(view, pixel_xy, ys.reshape(-1), xs.reshape(-1))
        for key, value in targets.items():
            batch[key] = value.reshape(height, width, -1) if value.shape[0] == height * width else value
        frame = self.catalog.frame(frame_key)
        if frame.keypoints3d is not None:
            batch["keypoints3d"] = frame.keypoints3d
        return dataset.cameras[index : index + 1].to(self.device), _to_device(batch, self.device)

    def _feature_targets(self, view, pixel_xy: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> Dict:
        """Heatmap and dense-pose targets at the given pixels (pixel centres in `pixel_xy`)."""
        targets: Dict[str, torch.Tensor] = {}
        if view.keypoints2d is not None:
            heatmaps, valid = heatmap_targets(pixel_xy, view.keypoints2d, self.config.heatmap_sigma)
            targets.update({"heatmap": heatmaps, "joint_valid": valid, "keypoints2d": view.keypoints2d})
        if view.densepose is not None:
            targets["densepose"] = view.densepose[y, x].float()
            mask = view.densepose_mask if view.densepose_mask is not None else view.mask
            targets["densepose_valid"] = mask[y, x, None]
        return targets


def _to_device(batch: Dict, device) -> Dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
