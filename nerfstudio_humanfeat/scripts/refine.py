"""ns-humanfeat-refine: NeuHMR, refinement of per-frame SMPL estimates of a monocular video by neural rendering.

Reads one camera of a ZJU-layout sequence (annots.npy, images, masks optional) and per-frame SMPL estimates (a ZJU
params/ folder or one .npz of poses, shapes, Rh, Th), selects anchor frames, registers joint features on them and
fits a motion field of residual poses through a renderer: a trained animatable model (--load-config, e.g. an
anipixel run) or the training-free splatting stand-in (--renderer splat). Writes the refined SMPL in both formats,
a JSON report of the losses per frame and an overlay of the initial (red) and refined (green) skeletons.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, Optional

import torch
import tyro
from rich.console import Console

from nerfstudio_humanfeat.body.smpl import SMPLBody, resolve_smpl_model
from nerfstudio_humanfeat.data.catalog import HumanDataError
from nerfstudio_humanfeat.refine.io import SmplSequence, load_sequence, load_video, save_npz, save_params_dir
from nerfstudio_humanfeat.refine.metrics import pose_sequence
from nerfstudio_humanfeat.refine.overlay import overlay_frames, write_overlay
from nerfstudio_humanfeat.refine.refine import NeuHMR, RefineConfig, RefineResult
from nerfstudio_humanfeat.refine.renderer import SplatRenderer

CONSOLE = Console()


@dataclass
class RefineCli:
    sequence: Path
    """The sequence folder (annots.npy, images, masks)."""
    smpl: Path
    """Initial per-frame SMPL: a ZJU params/ folder or an .npz (poses, shapes, Rh, Th[, frame_ids])."""
    output_dir: Path
    camera: int = 0
    """The camera (index into annots.npy) whose images form the monocular video."""
    renderer: Literal["auto", "nerf", "splat"] = "auto"
    """nerf: the model of --load-config; splat: the stand-in; auto: nerf when --load-config is given."""
    load_config: Optional[Path] = None
    """config.yml of an ns-train run of an animatable method (e.g. anipixel)."""
    data_root: Optional[Path] = None
    """Dataset root holding the sequence for the model's catalog (default: the one it was trained on)."""
    subject: Optional[str] = None
    """The sequence's subject name in that dataset (default: the sequence folder's name)."""
    smpl_model: Optional[Path] = None
    """SMPL pickle (default: $HUMANFEAT_SMPL_MODEL, else <sequence>/../body_model/SMPL_NEUTRAL.pkl)."""
    start: int = 0
    end: Optional[int] = None
    stride: int = 1
    image_scale: Optional[float] = None
    overlay: str = "overlay.mp4"
    """Overlay file name in the output folder: .mp4 / .gif video or .png strip."""
    config: RefineConfig = field(default_factory=RefineConfig)


def make_renderer(cli: RefineCli, video, initial: SmplSequence):
    kind = cli.renderer if cli.renderer != "auto" else ("nerf" if cli.load_config else "splat")
    if kind == "splat":
        return SplatRenderer(video, seed=cli.config.seed), "splat (training-free stand-in)"
    if cli.load_config is None:
        raise ValueError("--renderer nerf needs --load-config (config.yml of an animatable ns-train run)")
    from nerfstudio_humanfeat.refine.nerf_renderer import NerfPoseRenderer, load_model

    model = load_model(cli.load_config, cli.data_root)
    subject = cli.subject or cli.sequence.name
    return NerfPoseRenderer(model, video, subject, cli.camera, initial), f"{type(model).__name__} ({cli.load_config})"


def write_outputs(cli: RefineCli, body: SMPLBody, video, initial: SmplSequence, result: RefineResult, info: dict):
    out = cli.output_dir
    out.mkdir(parents=True, exist_ok=True)
    save_params_dir(result.refined, out / "params")
    save_npz(result.refined, out / "smpl_refined.npz")
    report = {**info, "config": asdict(cli.config), **result.report()}
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    joints = [video.project(pose_sequence(body, seq).joints)[0] for seq in (initial, result.refined)]
    write_overlay(overlay_frames(video.images, joints[0], joints[1]), out / cli.overlay)


def main(cli: RefineCli) -> RefineResult:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    video = load_video(cli.sequence, cli.camera, image_scale=cli.image_scale, start=cli.start, end=cli.end,
                       stride=cli.stride)  # fmt: skip
    initial = load_sequence(cli.smpl).select_ids(video.frame_ids)
    body = SMPLBody.from_file(resolve_smpl_model(cli.smpl_model, cli.sequence.parent))
    renderer, description = make_renderer(cli, video, initial)
    CONSOLE.print(f"NeuHMR: {len(video)} frames of camera {cli.camera} of {cli.sequence}, renderer {description}")
    result = NeuHMR(body, renderer, cli.config).refine(initial)
    info = {"sequence": str(cli.sequence), "camera": cli.camera, "renderer": description}
    write_outputs(cli, body, video, initial, result, info)
    mean = result.report()["mean"]
    CONSOLE.print(f"anchors {[video.frame_ids[i] for i in result.anchors]}; loss {mean['initial']['total']:.5f} -> "
                  f"{mean['refined']['total']:.5f}; wrote {cli.output_dir}")  # fmt: skip
    return result


def entrypoint() -> None:
    """Console script ns-humanfeat-refine."""
    cli = tyro.cli(RefineCli, description=__doc__)
    try:
        main(cli)
    except (HumanDataError, FileNotFoundError, ValueError) as err:
        CONSOLE.print(f"[bold red]ns-humanfeat-refine: {err}")
        sys.exit(1)


if __name__ == "__main__":
    entrypoint()
