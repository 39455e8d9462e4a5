"""The NeuHMR experiment of the paper on synthetic data: refine HMR-like estimates of a held-out subject's sequence
seen by one camera and report MPJPE and PVE (mm, camera space) before and after, per frame and averaged, with an
ablation without the joint-matching loss.

Initial estimates are the ground truth perturbed by ``refine.perturb`` (an HMR error model, seeded). The renderer is
the training-free splatting stand-in by default; with ``--load-config`` (an ns-train run of an animatable method such
as anipixel, trained on the same dataset) it is that model:

    python benchmarks/neuhmr_experiment.py --data-root /tmp/neuhmr/synth --output-dir /tmp/neuhmr/experiment
    python benchmarks/neuhmr_experiment.py --data-root <data> --load-config outputs/<run>/anipixel/<ts>/config.yml
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Dict, Optional

import torch
import tyro

from nerfstudio_humanfeat.body.smpl import SMPLBody, resolve_smpl_model
from nerfstudio_humanfeat.refine.io import load_sequence, load_video, save_npz
from nerfstudio_humanfeat.refine.metrics import pose_errors, pose_sequence
from nerfstudio_humanfeat.refine.overlay import overlay_frames, write_overlay
from nerfstudio_humanfeat.refine.perturb import PerturbConfig, perturb_sequence
from nerfstudio_humanfeat.refine.refine import NeuHMR, RefineConfig, frame_window
from nerfstudio_humanfeat.refine.renderer import SplatRenderer


@dataclass
class Experiment:
    data_root: Path = Path("/tmp/neuhmr/synth")
    """A synthetic dataset; generated here when missing (``num_subjects``, 1 held out, 40 frames, 4 cameras, 128 px)."""
    num_subjects: int = 2
    """Subjects of a generated dataset (one is held out; the others train the NeRF renderer)."""
    output_dir: Path = Path("/tmp/neuhmr/experiment")
    subject: Optional[str] = None
    """Default: the first test subject of splits.json."""
    camera: int = 0
    load_config: Optional[Path] = None
    """An animatable model's config.yml; None: the splatting stand-in."""
    perturb: PerturbConfig = field(default_factory=PerturbConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)
    ablation: bool = True
    """Also run without the joint-matching loss."""
    diagnose: bool = False
    """Instead of refining: does the renderer's objective prefer the true poses? Per frame rgb and geo losses at the
    initial and the true pose (anchors chosen and conditioned as NeuHMR does); whether joint matching moves the initial
    2D joints towards the true ones (registered features, one draw of candidates); and diagnose.png: image, mask, and
    the rendered opacity and colour at both poses for one frame that is not an anchor."""


def ensure_data(root: Path, num_subjects: int = 2) -> None:
    if (root / "splits.json").is_file():
        return
    from nerfstudio_humanfeat.synth.generator import generate, make_spec

    spec = make_spec(
        "demo", num_subjects=num_subjects, num_test_subjects=1, num_frames=40, num_cameras=4, resolution=128
    )
    generate(spec, root, progress=True)


def make_renderer(exp: Experiment, video, initial, subject: str):
    if exp.load_config is None:
        return SplatRenderer(video, seed=exp.refine.seed), "splat stand-in (no NeRF)"
    from nerfstudio_humanfeat.refine.nerf_renderer import NerfPoseRenderer, load_model

    model = load_model(exp.load_config, exp.data_root)
    return NerfPoseRenderer(model, video, subject, exp.camera, initial), f"{type(model).__name__} ({exp.load_config})"


def render_frame(renderer, frame: int, pose, chunk: int = 2048):
    """Every pixel of a video frame rendered in ``pose``: colour (H, W, 3) and opacity (H, W)."""
    video = renderer.video
    ys, xs = torch.meshgrid(torch.arange(video.height), torch.arange(video.width), indexing="ij")
    pixels = torch.stack([xs, ys], -1).reshape(-1, 2).float() + 0.5
    rgb, accumulation = [], []
    with torch.no_grad():
        for part in pixels.split(chunk):
            out = renderer.render(frame, pose, part)
            rgb.append(out.rgb)
            accumulation.append(out.accumulation)
    return torch.cat(rgb).reshape(video.height, video.width, 3), torch.cat(accumulation).reshape(video.height, -1)


def diagnose(exp: Experiment, body, video, initial, truth, subject: str) -> Dict:
    """Losses of the initial and the true poses under the renderer NeuHMR optimises through."""
    from nerfstudio_humanfeat.refine.losses import MATCH_JOINTS, iou_loss, match_joints
    from nerfstudio_humanfeat.refine.refine import sample_pixels

    renderer, description = make_renderer(exp, video, initial, subject)
    neuhmr = NeuHMR(body, renderer, exp.refine)
    anchors, _, _ = neuhmr.choose_anchors(initial)
    with torch.no_grad():
        renderer.condition(anchors, neuhmr.pose(initial, anchors))
    no_features = (torch.zeros(24, 1), torch.zeros(24, dtype=torch.bool))
    registered, valid = neuhmr.register(initial, anchors)
    joints = list(MATCH_JOINTS)
    rows = []
    for frame in range(len(video)):
        row = {"frame": video.frame_ids[frame], "anchor": frame in anchors}
        generator = torch.Generator().manual_seed(frame)
        with torch.no_grad():
            current, _ = video.project(neuhmr.pose(initial, [frame]).joints[0, joints])
            true_2d, _ = video.project(neuhmr.pose(truth, [frame]).joints[0, joints])
            size, cfg = (video.height, video.width), exp.refine
            target, _ = match_joints(renderer.feature_map(frame), size, current, registered[joints], cfg.num_candidates,
                                     cfg.sigma_px, generator)  # fmt: skip
            used = valid[joints]
            before, after = (current - true_2d).norm(dim=-1)[used], (target - true_2d).norm(dim=-1)[used]
            row["joint_px_initial"], row["joint_px_matched"] = float(before.mean()), float(after.mean())
            row["joint_matched_closer"] = float((after < before).float().mean())
            window = frame_window(video, neuhmr.pose(truth, [frame]), frame, exp.refine.margin_px)
            pixels = sample_pixels(window, exp.refine.report_rays, generator)
            for name, sequence in (("initial", initial), ("truth", truth)):
                out = neuhmr.frame_losses(frame, neuhmr.pose(sequence, [frame]), pixels, *no_features, generator,
                                          use_joint=False)  # fmt: skip
                row[f"rgb_{name}"], row[f"geo_{name}"] = float(out["rgb"]), float(out["geo"])
        rows.append(row)
        tag = " (anchor)" if row["anchor"] else ""
        print(f"frame {row['frame']:4d}{tag:9s}  rgb {row['rgb_initial']:.4f} -> {row['rgb_truth']:.4f} at the truth"
              f"   geo {row['geo_initial']:.3f} -> {row['geo_truth']:.3f}")  # fmt: skip
    others = [r for r in rows if not r["anchor"]] or rows
    summary = {"renderer": description, "anchors": anchors, "frames": rows}
    for key in ("joint_px_initial", "joint_px_matched", "joint_matched_closer"):
        summary[key] = sum(r[key] for r in others) / len(others)
    for key in ("rgb", "geo"):
        summary[f"{key}_initial"] = sum(r[f"{key}_initial"] for r in others) / len(others)
        summary[f"{key}_truth"] = sum(r[f"{key}_truth"] for r in others) / len(others)
        summary[f"{key}_truth_lower"] = sum(r[f"{key}_truth"] < r[f"{key}_initial"] for r in others) / len(others)
    frame = next(i for i, r in enumerate(rows) if not r["anchor"])
    panels = [video.images[frame], video.masks[frame].float()[..., None].expand(-1, -1, 3)]
    for sequence in (initial, truth):
        rgb, accumulation = render_frame(renderer, frame, neuhmr.pose(sequence, [frame]))
        panels += [accumulation[..., None].expand(-1, -1, 3), rgb]
        mask = video.masks[frame].float()
        summary.setdefault("full_frame_iou", []).append(1.0 - float(iou_loss(accumulation, mask)))
    strip = (torch.cat([p.clamp(0, 1) for p in panels], dim=1) * 255).byte().numpy()
    import imageio.v2 as imageio

    exp.output_dir.mkdir(parents=True, exist_ok=True)
    imageio.imwrite(exp.output_dir / "diagnose.png", strip)
    (exp.output_dir / "diagnose.json").write_text(json.dumps(summary, indent=2))
    print(f"renderer: {description}; anchors {anchors}; frames that are not anchors:")
    for key in ("rgb", "geo"):
        print(f"  {key}: initial {summary[f'{key}_initial']:.4f}, truth {summary[f'{key}_truth']:.4f}; "
              f"lower at the truth in {100 * summary[f'{key}_truth_lower']:.0f} % of frames")  # fmt: skip
    print(f"  joint matching at the initial pose ({len(joints)} joints, registered ones): 2D error to the true joints "
          f"{summary['joint_px_initial']:.2f} px at the initial joints, {summary['joint_px_matched']:.2f} px at their "
          f"matches; the match is closer for {100 * summary['joint_matched_closer']:.0f} % of joints")  # fmt: skip
    print(
        f"  frame {video.frame_ids[frame]}, whole image: IoU of the rendered opacity with the mask "
        f"{summary['full_frame_iou'][0]:.3f} at the initial pose, {summary['full_frame_iou'][1]:.3f} at the truth"
    )
    print(f"wrote {exp.output_dir / 'diagnose.png'} (image, mask, opacity and colour at the initial and true poses)")
    return summary


def main(exp: Experiment) -> Dict:
    torch.manual_seed(0)
    ensure_data(exp.data_root, exp.num_subjects)
    splits = json.loads((exp.data_root / "splits.json").read_text())
    subject = exp.subject or splits["test_subjects"][0]
    sequence = exp.data_root / subject
    video = load_video(sequence, exp.camera)
    body = SMPLBody.from_file(resolve_smpl_model(None, exp.data_root))
    truth = load_sequence(sequence / "params").select_ids(video.frame_ids)
    initial = perturb_sequence(truth, exp.perturb, video.world_to_camera)
    if exp.diagnose:
        return diagnose(exp, body, video, initial, truth, subject)
    exp.output_dir.mkdir(parents=True, exist_ok=True)
    save_npz(initial, exp.output_dir / "initial.npz")
    w2c = video.world_to_camera
    rows = {"initial": pose_errors(body, initial, truth, w2c)}
    runs = {"NeuHMR": exp.refine}
    if exp.ablation:
        runs["NeuHMR w/o L_joint"] = replace(exp.refine, lambda_joint=0.0)
    timings, reports, description = {}, {}, ""
    for name, config in runs.items():
        renderer, description = make_renderer(exp, video, initial, subject)
        start = time.perf_counter()
        result = NeuHMR(body, renderer, config).refine(initial)
        timings[name] = time.perf_counter() - start
        rows[name] = pose_errors(body, result.refined, truth, w2c)
        reports[name] = result.report()
        tag = "full" if name == "NeuHMR" else "no_joint"
        save_npz(result.refined, exp.output_dir / f"refined_{tag}.npz")
        if name == "NeuHMR":
            joints = [video.project(pose_sequence(body, s).joints)[0] for s in (initial, result.refined, truth)]
            write_overlay(overlay_frames(video.images, joints[0], joints[1], joints[2]), exp.output_dir / "overlay.png")
    summary = {
        "subject": subject,
        "camera": exp.camera,
        "frames": len(video),
        "image_size": [video.height, video.width],
        "renderer": description,
        "epochs": reports["NeuHMR"]["epochs"],
        "steps": reports["NeuHMR"]["steps"],
        "anchors": reports["NeuHMR"]["anchors"],
        "seconds": timings,
        "perturb": asdict(exp.perturb),
        "refine": asdict(exp.refine),
        "mean": {k: {m: float(v.mean()) for m, v in e.items()} for k, e in rows.items()},
        "per_frame": {
            k: {m: [round(float(x), 2) for x in v] for m, v in e.items()} | {"frame": video.frame_ids}
            for k, e in rows.items()
        },
        "losses": {k: r["mean"] for k, r in reports.items()},
    }
    (exp.output_dir / "results.json").write_text(json.dumps(summary, indent=2))
    print(f"\nNeuHMR on {subject}, camera {exp.camera}, {len(video)} frames {video.width}x{video.height}; renderer: "
          f"{description}; {summary['epochs']} epochs ({summary['steps']} steps)")  # fmt: skip
    columns = {"mpjpe_mm": "MPJPE", "pve_mm": "PVE", "mpjpe_xy_mm": "across", "mpjpe_z_mm": "depth",
               "pelvis_aligned_mpjpe_mm": "pelvis-aligned"}  # fmt: skip
    print("joint errors in mm (camera space); across: the image plane part, depth: |z| part")
    print(f"{'':22s} " + " ".join(f"{title:>14s}" for title in columns.values()) + f" {'time (s)':>9s}")
    for name, errors in rows.items():
        seconds = f"{timings[name]:9.1f}" if name in timings else f"{'':9s}"
        print(f"{name:22s} " + " ".join(f"{float(errors[key].mean()):14.1f}" for key in columns) + f" {seconds}")
    print("per frame MPJPE (mm), initial -> NeuHMR:")
    first, last = rows["initial"]["mpjpe_mm"], rows["NeuHMR"]["mpjpe_mm"]
    print("  " + ", ".join(f"{f}: {float(a):.0f}->{float(b):.0f}" for f, a, b in zip(video.frame_ids, first, last)))
    print(f"wrote {exp.output_dir / 'results.json'} and {exp.output_dir / 'overlay.png'}")
    return summary


if __name__ == "__main__":
    main(tyro.cli(Experiment, description=__doc__))
