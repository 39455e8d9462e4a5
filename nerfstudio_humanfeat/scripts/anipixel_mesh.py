"""ns-humanfeat-mesh: the surface of a trained AniPixel checkpoint's SDF by marching cubes, as a PLY mesh.

The canonical surface (``--space canonical``: the subject's canonical body, big pose) or the posed one (``--space
posed``: the SDF seen through backward skinning in the pose of ``--frame``), of a chosen subject, conditioned on the
source views of ``--source-frame`` (default: the same frame; another frame gives the subject animated into a novel
pose). Marching cubes is scikit-image's (an optional dependency: ``pip install scikit-image``).

    ns-humanfeat-mesh --load-config outputs/.../config.yml --subject synth_002 --frame 1 --source-frame 0 \
        --space posed --output posed.ply
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Tuple

import numpy as np
import torch
import tyro
from jaxtyping import Float, Int
from nerfstudio.utils.rich_utils import CONSOLE


@dataclass
class MeshConfig:
    """Export the SDF surface of an AniPixel checkpoint."""

    load_config: Path
    """The run's config.yml (its latest checkpoint is loaded)."""
    output: Path = Path("anipixel_mesh.ply")
    subject: Optional[str] = None
    """Subject name (default: the first test subject)."""
    frame: int = 0
    """Index (into the subject's frames) of the pose of the posed mesh."""
    source_frame: Optional[int] = None
    """Index of the frame whose source images condition the SDF (default: ``frame``)."""
    space: Literal["canonical", "posed"] = "canonical"
    voxel_size: float = 0.01
    """Marching-cubes grid spacing, metres."""
    camera: Optional[int] = None
    """Dataset camera whose nearest source views condition the SDF (default: the subject's first target camera)."""
    chunk: int = 32768


@torch.no_grad()
def sdf_volume(
    model, frame_key: int, source_frame_key: int, space: str, voxel_size: float, camera: int, chunk: int = 32768
) -> Tuple[Float[np.ndarray, "X Y Z"], Float[np.ndarray, "3"]]:
    """The SDF of an AniPixel model on a grid (canonical box or the frame's world box) and the grid's origin."""
    target = model.target_of_dataset_view(frame_key, camera)
    target.source_frame_key = source_frame_key
    sources = model.sources_for(target, exclude=(camera,))
    target, _, cond = model.conditioned(target, sources)
    if space == "canonical":
        lower, upper = cond.subject.box.lower - 0.1, cond.subject.box.upper + 0.1
    else:
        lower, upper = target.bbox[0], target.bbox[1]
    axes = [torch.arange(float(lo), float(hi) + 1e-9, voxel_size) for lo, hi in zip(lower, upper)]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)
    values = []
    for points in grid.reshape(-1, 3).to(model.device).split(chunk):
        if space == "canonical":
            values.append(model.canonical_query(points, cond)[:, 0].cpu())
        else:
            values.append(model.query_points(target, sources, cond, points)["sdf"][:, 0].cpu())
    volume = torch.cat(values).reshape(grid.shape[:3]).numpy()
    return volume, np.array([float(a[0]) for a in axes])


def marching_cubes(
    volume: Float[np.ndarray, "X Y Z"], origin: Float[np.ndarray, "3"], voxel_size: float
) -> Tuple[Float[np.ndarray, "V 3"], Int[np.ndarray, "F 3"]]:
    """The zero level set of an SDF volume (negative inside), normals pointing outwards."""
    try:
        from skimage import measure
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("mesh export needs scikit-image: pip install scikit-image") from error
    if not (volume.min() < 0.0 < volume.max()):
        raise ValueError(f"the SDF has no zero crossing in the grid (min {volume.min():.3f}, max {volume.max():.3f})")
    verts, faces, _, _ = measure.marching_cubes(-volume, level=0.0, spacing=(voxel_size,) * 3)
    return verts + origin, faces


def write_ply(path: Path, vertices: Float[np.ndarray, "V 3"], faces: Int[np.ndarray, "F 3"]) -> None:
    """A binary little-endian PLY mesh."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (
        f"ply\nformat binary_little_endian 1.0\nelement vertex {len(vertices)}\nproperty float x\nproperty float y\n"
        f"property float z\nelement face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n"
    )
    face_records = np.empty(len(faces), dtype=[("n", "u1"), ("v", "<i4", (3,))])
    face_records["n"], face_records["v"] = 3, faces
    with open(path, "wb") as handle:
        handle.write(header.encode())
        handle.write(vertices.astype("<f4").tobytes())
        handle.write(face_records.tobytes())


def main(config: MeshConfig) -> Path:
    from nerfstudio.utils.eval_utils import eval_setup

    _, pipeline, _, step = eval_setup(config.load_config, test_mode="test")
    model = pipeline.model
    model.eval()
    if not hasattr(model, "canonical_query"):
        raise ValueError(f"{type(model).__name__} has no canonical SDF: mesh export is for anipixel checkpoints")
    catalog = model.catalog
    names = [s.name for s in catalog.subjects]
    name = config.subject or next((s.name for s in catalog.subjects if s.split == "test"), names[0])
    if name not in names:
        raise ValueError(f"unknown subject {name!r}; subjects are {names}")
    subject_index = names.index(name)
    subject = catalog.subjects[subject_index]
    frame_key = catalog.frame_key(subject_index, config.frame)
    source_key = catalog.frame_key(subject_index, config.frame if config.source_frame is None else config.source_frame)
    camera = config.camera if config.camera is not None else (subject.target_cameras or subject.source_cameras)[0]
    volume, origin = sdf_volume(model, frame_key, source_key, config.space, config.voxel_size, camera, config.chunk)
    vertices, faces = marching_cubes(volume, origin, config.voxel_size)
    if config.space != "canonical":
        vertices = vertices - catalog.world_offset.double().numpy()  # the dataset's world, as its SMPL fits
    write_ply(config.output, vertices, faces)
    CONSOLE.print(
        f"{config.space} mesh of {catalog.describe(frame_key)} (sources: {catalog.describe(source_key)}), step {step}: "
        f"{len(vertices)} vertices, {len(faces)} faces -> {config.output}"
    )
    return config.output


def entrypoint() -> None:
    tyro.extras.set_accent_color("bright_yellow")
    main(tyro.cli(MeshConfig))


if __name__ == "__main__":
    entrypoint()
