"""The methods this plugin registers with nerfstudio (``ns-train <name>``).

Defaults follow the papers (512x512 ZJU-MoCap, GHNeRF: Adam 5e-4 halved every 50k steps, 200k steps).
Every method has a CPU-sized variant ``<method>-cpu`` (settings in ``nerfstudio_humanfeat.configs.cpu``); without
CUDA any of them trains on the CPU.
"""

from __future__ import annotations

from nerfstudio.configs.base_config import ViewerConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.schedulers import MultiStepSchedulerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.models.base_model import ModelConfig
from nerfstudio.plugins.types import MethodSpecification

from nerfstudio_humanfeat.configs.cpu import cpu_variant
from nerfstudio_humanfeat.data.datamanagers.human_datamanager import HumanDataManagerConfig
from nerfstudio_humanfeat.data.dataparsers import ZJUMocapDataParserConfig
from nerfstudio_humanfeat.engine.trainer import HumanTrainerConfig
from nerfstudio_humanfeat.models.anipixel import AniPixelModelConfig
from nerfstudio_humanfeat.models.ghnerf import GHNeRFModelConfig
from nerfstudio_humanfeat.models.hfnerf import HFNeRFModelConfig
from nerfstudio_humanfeat.models.keypointnerf import KeypointNeRFModelConfig
from nerfstudio_humanfeat.pipelines.human_pipeline import HumanPipelineConfig


def _trainer(
    method_name: str,
    model: ModelConfig,
    lr: float,
    max_steps: int = 200_000,
    num_rays: int = 4096,
    num_patches: int = 4,
    patch_size: int = 64,
    **datamanager,
) -> TrainerConfig:
    milestones = tuple(range(max_steps // 4, max_steps, max_steps // 4))
    return HumanTrainerConfig(
        method_name=method_name,
        steps_per_eval_batch=500,
        steps_per_eval_image=2000,
        steps_per_eval_all_images=50_000,
        steps_per_save=5000,
        max_num_iterations=max_steps,
        mixed_precision=False,
        pipeline=HumanPipelineConfig(
            datamanager=HumanDataManagerConfig(
                train_num_rays_per_batch=num_rays,
                eval_num_rays_per_batch=num_rays,
                num_patches=num_patches,
                perceptual_patch_size=patch_size,
                **datamanager,
            ),
            model=model,
        ),
        optimizers={
            "fields": {
                "optimizer": AdamOptimizerConfig(lr=lr, eps=1e-8),
                "scheduler": MultiStepSchedulerConfig(max_steps=max_steps, gamma=0.5, milestones=milestones),
            }
        },
        viewer=ViewerConfig(num_rays_per_chunk=1 << 15),
        vis="viewer",
    )


ghnerf = MethodSpecification(
    config=_trainer("ghnerf", GHNeRFModelConfig(human_encoder="resnet34"), lr=5e-4),
    description="GHNeRF: ENeRF cost volume + ResNet34 human encoder; heatmaps, dense pose. Data: zju-mocap.",
)
ghnerf_dino = MethodSpecification(
    config=_trainer("ghnerf-dino", GHNeRFModelConfig(human_encoder="dino_vits8"), lr=5e-4),
    description="GHNeRF with the DINO ViT-S/8 human encoder (blocks 9 and 11). Data: zju-mocap.",
)
ghnerf_resnet18 = MethodSpecification(
    config=_trainer("ghnerf-resnet18", GHNeRFModelConfig(human_encoder="resnet18"), lr=5e-4),
    description="GHNeRF with a ResNet18 human encoder. Data: zju-mocap.",
)
enerf_heatmap = MethodSpecification(
    config=_trainer("enerf-heatmap", GHNeRFModelConfig(human_encoder="none"), lr=5e-4),
    description="GHNeRF's baseline: ENeRF with a heatmap branch and no human encoder. Data: zju-mocap.",
)
hfnerf = MethodSpecification(
    config=_trainer("hfnerf", HFNeRFModelConfig(encoder="resnet34"), lr=1e-4, num_rays=1024, num_patches=0),
    description="HFNeRF: PixelNeRF-style human feature NeRF (ResNet34) with a heatmap branch. Data: zju-mocap.",
)
hfnerf_dino = MethodSpecification(
    config=_trainer("hfnerf-dino", HFNeRFModelConfig(encoder="dino_vits8"), lr=1e-4, num_rays=1024, num_patches=0),
    description="HFNeRF with the DINO ViT-S/8 encoder. Data: zju-mocap.",
)

KEYPOINTNERF_ZJU_SPLIT = (
    "--pipeline.datamanager.dataparser.subjects-train",
    "CoreView_313", "CoreView_315", "CoreView_377", "CoreView_386", "CoreView_390", "CoreView_392", "CoreView_396",
    "--pipeline.datamanager.dataparser.subjects-test", "CoreView_387", "CoreView_393", "CoreView_394",
    "--pipeline.datamanager.dataparser.source-cameras", "0", "7", "15",
    "--pipeline.datamanager.dataparser.target-cameras", "3", "5", "10", "12", "18", "20",
)  # fmt: skip
"""KeypointNeRF's ZJU-MoCap split (paper Sec. 6.3, reference code): train on 313, 315, 377, 386, 390, 392, 396, test
on 387, 393, 394; input cameras 0, 7, 15; target cameras 3, 5, 10, 12, 18, 20 (the reference evaluates every 30th
test frame: add ``--pipeline.datamanager.dataparser.frame-stride 30`` for evaluation). These are dataparser flags,
so they follow the ``zju-mocap`` subcommand (``configs.cli.with_dataparser`` puts them there):
``ns-train keypointnerf --data data/zju_mocap zju-mocap <KEYPOINTNERF_ZJU_SPLIT>``."""

keypointnerf = MethodSpecification(
    config=_trainer(
        "keypointnerf",
        KeypointNeRFModelConfig(),
        lr=5e-4,
        max_steps=200_000,
        num_rays=0,
        num_patches=1,
        patch_size=64,
        patch_placement="foreground",
        train_num_source_views=(3, 3),
        source_sampling="nearest",
    ),
    description="KeypointNeRF: relative spatial keypoint encoding, hourglass + residual encoders, IBR colour; "
    "heatmaps, dense pose. Data: zju-mocap.",
)
"""KeypointNeRF (paper 003) in its body setting: one 64x64 patch around a random foreground pixel per step (no other
rays), the 3 nearest source views with 50% dropout of all but the first, 64 + 64 samples in the frame's SMPL box,
L1 coarse 1 / fine 10 + VGG 0.5, Adam 5e-4 (the reference code; the paper says 1e-4), halved every 50k steps (this
plugin's schedule; the reference keeps it constant). The heatmap/dense-pose heads are on (``--pipeline.model.feature-
heads False`` gives the paper's method). ZJU split of the paper: ``KEYPOINTNERF_ZJU_SPLIT``."""

anipixel = MethodSpecification(
    config=_trainer(
        "anipixel",
        AniPixelModelConfig(),
        lr=5e-4,
        max_steps=150_000,
        num_rays=0,
        num_patches=1,
        patch_size=64,
        patch_placement="foreground",
        train_num_source_views=(3, 3),
        source_sampling="nearest",
        dataparser=ZJUMocapDataParserConfig(novel_pose=True),
    ),
    description="AniPixel: animatable generalizable avatar (bidirectional skinning, canonical SDF on a hash grid, "
    "IBR colour + shading); novel views and novel poses; heatmaps, dense pose. Data: zju-mocap, human36m.",
)
"""AniPixel (paper 004): Adam 5e-4, batch of one target view, 150k steps of which the first 20% (the paper's 30k)
train the mask loss alone; one 64x64 patch around a foreground pixel per step (the paper renders patches for its VGG
loss, as KeypointNeRF), the 3 nearest source views, 64 coarse + 16 fine samples in the frame's SMPL box. ns-eval
reports novel views and, from the zju-mocap dataparser's ``novel_pose`` views, novel poses (``novel_pose/...``); with
the human36m subcommand add ``--pipeline.datamanager.dataparser.novel-pose True``. ``--pipeline.model.feature-heads
False`` gives the paper's method without this plugin's heatmap and dense-pose heads."""


def _cpu(spec: MethodSpecification) -> MethodSpecification:
    """The CPU-sized variant of a method (``<method>-cpu``; settings in ``configs/cpu.py``)."""
    return MethodSpecification(config=cpu_variant(spec.config), description=f"{spec.description} CPU-sized.")


ghnerf_cpu = _cpu(ghnerf)
ghnerf_dino_cpu = _cpu(ghnerf_dino)
ghnerf_resnet18_cpu = _cpu(ghnerf_resnet18)
enerf_heatmap_cpu = _cpu(enerf_heatmap)
hfnerf_cpu = _cpu(hfnerf)
hfnerf_dino_cpu = _cpu(hfnerf_dino)
keypointnerf_cpu = _cpu(keypointnerf)
anipixel_cpu = _cpu(anipixel)
