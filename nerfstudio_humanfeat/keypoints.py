"""Heatmap targets, 2D/3D keypoint extraction from heatmaps (GHNeRF 3.4) and skeleton / heatmap visualisation.

Coordinates: keypoints and sample positions share one continuous pixel frame, the project's (``projection``): pixel
(row i, col j) covers [j, j+1) x [i, i+1), so its centre is (j + 0.5, i + 0.5), where nerfstudio's rays go.
``pixel_center`` (default 0.5) moves that centre, e.g. 0.0 for OpenCV/OpenPose's integer-centred pixels.

Missing keypoints: a joint is missing when its confidence is <= 0 or its location is not finite. Extraction
reports a missing joint as (nan, nan, 0) in 2D and (nan, nan, nan, 0) in 3D, so it can never be scored as a
location; drawing and the metrics skip it.
"""

from __future__ import annotations

from typing import Literal, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch
from jaxtyping import Bool, Float
from nerfstudio.utils.colormaps import apply_float_colormap
from scipy import ndimage
from torch import Tensor

from nerfstudio_humanfeat.skeleton import BODY25_COLORS, BODY25_LIMBS

PIXEL_CENTER = 0.5
"""Offset of a pixel's centre from its integer index, in the project's pixel frame."""
DEFAULT_THRESHOLD = 0.1
"""Peak threshold on the smoothed heatmap (OpenPose's body-part threshold, thre1 = 0.1)."""
DEFAULT_FILTER_SIGMA = 1.0
"""Standard deviation, in pixels (voxels), of the Gaussian filter applied before thresholding."""

Refinement = Literal["quadratic", "centroid", "none"]


def keypoint_valid(keypoints: Float[Tensor, "*bs K"]) -> Bool[Tensor, "*bs"]:
    """Whether each keypoint (location..., confidence) is present: confidence > 0 and a finite location."""
    return (keypoints[..., -1] > 0) & torch.isfinite(keypoints[..., :-1]).all(dim=-1)


def heatmap_targets(
    pixel_xy: Float[Tensor, "N 2"], keypoints: Float[Tensor, "*kb J 3"], sigma: float
) -> Tuple[Float[Tensor, "N J"], Bool[Tensor, "*kb J"]]:
    """Unnormalised Gaussian heatmaps (peak 1) at arbitrary pixel positions, and which joints are valid.

    ``keypoints`` is (J, 3) for one image, or (N, J, 3) per sample (e.g. rays from several images). Invalid joints
    (see ``keypoint_valid``) get target 0; exclude them from losses with the returned mask.
    """
    valid = keypoint_valid(keypoints)
    centres = torch.where(valid[..., None], keypoints[..., :2], torch.zeros_like(keypoints[..., :2]))
    sq_dist = ((pixel_xy[:, None, :] - centres) ** 2).sum(dim=-1)
    targets = torch.exp(-sq_dist / (2.0 * sigma**2)) * valid.to(pixel_xy.dtype)
    return targets, valid


def pixel_grid(
    height: int, width: int, pixel_center: float = PIXEL_CENTER, device: Optional[torch.device] = None
) -> Float[Tensor, "H W 2"]:
    """(x, y) of every pixel centre."""
    ys = torch.arange(height, dtype=torch.float32, device=device) + pixel_center
    xs = torch.arange(width, dtype=torch.float32, device=device) + pixel_center
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y], dim=-1)


def heatmap_image(
    height: int, width: int, keypoints: Float[Tensor, "J 3"], sigma: float, pixel_center: float = PIXEL_CENTER
) -> Float[Tensor, "H W J"]:
    """Target heatmaps of a whole image (channels last, like rendered outputs); 0 for invalid joints."""
    grid = pixel_grid(height, width, pixel_center, device=keypoints.device).to(keypoints.dtype)
    targets, _ = heatmap_targets(grid.reshape(-1, 2), keypoints, sigma)
    return targets.reshape(height, width, -1)


def feature_map_heatmaps(
    keypoints: Float[Tensor, "V J 3"],
    corners: Float[Tensor, "V 2"],
    stride: float,
    height: int,
    width: int,
    sigma: float,
) -> Float[Tensor, "V h w J"]:
    """Target heatmaps on the (h, w) feature maps of V images: keypoints in full-image pixels, each image's map
    covering the window whose top-left corner is at ``corners`` with ``stride`` image pixels per cell; ``sigma`` in
    image pixels. Joints with confidence 0 get all-zero maps."""
    maps = []
    for view, corner in zip(keypoints, corners):
        xy = (view[:, :2] - corner) / stride
        maps.append(heatmap_image(height, width, torch.cat([xy, view[:, 2:]], dim=-1), sigma / stride))
    return torch.stack(maps)


def _refine_quadratic(field: np.ndarray, peak: Tuple[int, ...]) -> np.ndarray:
    """Per-axis sub-voxel offset of a parabola through the log values around the peak (exact for Gaussians)."""
    offsets = np.zeros(field.ndim)
    for axis, index in enumerate(peak):
        if index == 0 or index == field.shape[axis] - 1:
            continue
        before, after = list(peak), list(peak)
        before[axis] -= 1
        after[axis] += 1
        values = np.array([field[tuple(before)], field[peak], field[tuple(after)]])
        if np.all(values > 0):
            values = np.log(values)
        curvature = values[0] - 2 * values[1] + values[2]
        if curvature < 0:
            offsets[axis] = np.clip(0.5 * (values[0] - values[2]) / curvature, -0.5, 0.5)
    return offsets


def find_peak(
    field: np.ndarray,
    threshold: float = DEFAULT_THRESHOLD,
    filter_sigma: float = DEFAULT_FILTER_SIGMA,
    refine: Refinement = "quadratic",
) -> Optional[Tuple[np.ndarray, float]]:
    """The keypoint of one heatmap channel of any dimension, in (fractional) array indices, and its confidence.

    Gaussian filter, threshold to a binary map, connected regions; the region with the highest peak wins and its
    peak element is the keypoint, optionally refined below the grid ("quadratic": log-parabola per axis around
    the peak; "centroid": value-weighted centroid of the region). Confidence = the unfiltered value at the peak
    element (as OpenPose scores peaks). None when no smoothed element exceeds the threshold.
    """
    raw = field.astype(np.float64)
    smoothed = ndimage.gaussian_filter(raw, filter_sigma, mode="constant") if filter_sigma > 0 else raw
    regions, count = ndimage.label(smoothed > threshold)
    if count == 0:
        return None
    labels = np.arange(1, count + 1)
    best = labels[int(np.argmax(ndimage.maximum(smoothed, regions, labels)))]
    peak = tuple(int(i) for i in ndimage.maximum_position(smoothed, regions, best))
    position = np.asarray(peak, dtype=np.float64)
    if refine == "quadratic":
        position = position + _refine_quadratic(smoothed, peak)
    elif refine == "centroid":
        position = np.asarray(ndimage.center_of_mass(smoothed, regions, best), dtype=np.float64)
    return position, float(raw[peak])


def gaussian_smooth(
    fields: Float[Tensor, "J X *rest"], sigma: float, truncate: float = 4.0
) -> Float[Tensor, "J X *rest"]:
    """Separable Gaussian filter over every grid axis with zero padding (scipy's ``gaussian_filter``, mode
    'constant'), on the tensor's device."""
    if sigma <= 0:
        return fields
    radius = int(truncate * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=fields.dtype, device=fields.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    out = fields
    for axis in range(1, fields.ndim):
        moved = out.movedim(axis, -1)
        shape = moved.shape
        line = torch.nn.functional.conv1d(moved.reshape(-1, 1, shape[-1]), kernel.view(1, 1, -1), padding=radius)
        out = line.reshape(shape).movedim(-1, axis)
    return out


def _extract_on_device(
    fields: Float[Tensor, "J X *rest"], threshold: float, filter_sigma: float, refine: Refinement
) -> Tuple[Float[Tensor, "J dims"], Float[Tensor, " J"]]:
    """``find_peak`` for every channel at once where the tensor lives: the region with the highest peak holds the
    channel's maximum, so (without centroid refinement) no connected-component labelling is needed."""
    raw = fields.detach().double()
    smoothed = gaussian_smooth(raw, filter_sigma)
    grid = smoothed.shape[1:]
    flat = smoothed.reshape(smoothed.shape[0], -1)
    best, index = flat.max(dim=1)
    peak = torch.stack(torch.unravel_index(index, grid), dim=-1)
    positions = peak.double()
    if refine == "quadratic":
        channel = torch.arange(len(peak), device=peak.device)
        for axis, size in enumerate(grid):
            inner = (peak[:, axis] > 0) & (peak[:, axis] < size - 1)
            values = []
            for step in (-1, 0, 1):
                moved = peak.clone()
                moved[:, axis] = (moved[:, axis] + step).clamp(0, size - 1)
                values.append(smoothed[(channel, *moved.unbind(-1))])
            values = torch.stack(values, dim=-1)
            values = torch.where((values > 0).all(-1, keepdim=True), values.clamp_min(1e-300).log(), values)
            curvature = values[:, 0] - 2 * values[:, 1] + values[:, 2]
            offset = (0.5 * (values[:, 0] - values[:, 2]) / curvature.where(curvature < 0, -1.0)).clamp(-0.5, 0.5)
            positions[:, axis] += torch.where(inner & (curvature < 0), offset, torch.zeros_like(offset))
    confidence = raw.reshape(raw.shape[0], -1).gather(1, index[:, None])[:, 0]
    found = best > threshold
    positions = torch.where(found[:, None], positions, torch.full_like(positions, float("nan")))
    confidence = torch.where(found, confidence, torch.zeros_like(confidence))
    return positions.float().cpu(), confidence.float().cpu()


def _extract(
    volumes: Tensor, threshold: float, filter_sigma: float, refine: Refinement
) -> Tuple[Float[Tensor, "J dims"], Float[Tensor, " J"]]:
    if refine != "centroid":
        return _extract_on_device(volumes, threshold, filter_sigma, refine)
    fields = volumes.detach().float().cpu().numpy()
    positions = np.full((fields.shape[0], fields.ndim - 1), np.nan)
    confidence = np.zeros(fields.shape[0])
    for joint, field in enumerate(fields):
        found = find_peak(field, threshold, filter_sigma, refine)
        if found is not None:
            positions[joint], confidence[joint] = found
    return torch.from_numpy(positions).float(), torch.from_numpy(confidence).float()


def extract_keypoints_2d(
    heatmaps: Float[Tensor, "J H W"],
    threshold: float = DEFAULT_THRESHOLD,
    filter_sigma: float = DEFAULT_FILTER_SIGMA,
    refine: Refinement = "quadratic",
    pixel_center: float = PIXEL_CENTER,
) -> Float[Tensor, "J 3"]:
    """2D keypoints (x, y, confidence) from per-joint heatmaps (channels first; permute rendered (H, W, J)).

    See ``find_peak``. Joints with no region above ``threshold`` are (nan, nan, 0). Returned on the CPU.
    """
    rows_cols, confidence = _extract(heatmaps, threshold, filter_sigma, refine)
    xy = rows_cols.flip(-1) + pixel_center
    return torch.cat([xy, confidence[:, None]], dim=-1)


def volume_grid(bbox: Float[Tensor, "2 3"], voxel_size: float) -> Float[Tensor, "X Y Z 3"]:
    """World points of an isotropic grid from ``bbox[0]`` that covers the box (the last row may pass bbox[1]).

    Query a heatmap volume at these points, then pass ``origin=bbox[0]``, ``spacing=voxel_size`` to
    ``extract_keypoints_3d``.
    """
    counts = torch.ceil((bbox[1] - bbox[0]) / voxel_size - 1e-6).long().clamp_min(0) + 1
    axes = [
        bbox[0, k] + voxel_size * torch.arange(int(counts[k]), dtype=bbox.dtype, device=bbox.device) for k in range(3)
    ]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)


def extract_keypoints_3d(
    volume: Float[Tensor, "J X Y Z"],
    origin: Float[Tensor, " 3"],
    spacing: Union[float, Float[Tensor, " 3"]],
    threshold: float = DEFAULT_THRESHOLD,
    filter_sigma: float = DEFAULT_FILTER_SIGMA,
    refine: Refinement = "quadratic",
) -> Float[Tensor, "J 4"]:
    """3D keypoints (x, y, z, confidence) in world units from a volumetric heatmap (GHNeRF 3.4).

    ``volume[j, a, b, c]`` is the heatmap at ``origin + (a, b, c) * spacing`` (see ``volume_grid``); extraction is
    ``find_peak`` in 3D, ``filter_sigma`` in voxels. Joints with no region above ``threshold`` are
    (nan, nan, nan, 0). Returned on the CPU.
    """
    indices, confidence = _extract(volume, threshold, filter_sigma, refine)
    spacing_t = torch.as_tensor(spacing, dtype=torch.float32).cpu()
    xyz = origin.detach().float().cpu() + indices * spacing_t
    return torch.cat([xyz, confidence[:, None]], dim=-1)


def _to_uint8(image: Union[np.ndarray, Tensor]) -> Tuple[np.ndarray, bool]:
    array = image.detach().cpu().numpy() if isinstance(image, Tensor) else np.asarray(image)
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array.copy()), True
    return np.ascontiguousarray((np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)), False


def draw_skeleton(
    image: Union[np.ndarray, Tensor],
    keypoints: Union[np.ndarray, Float[Tensor, "J 3"]],
    limbs: Sequence[Tuple[int, int]] = BODY25_LIMBS,
    colors: Sequence[Tuple[int, int, int]] = BODY25_COLORS,
    radius: Optional[int] = None,
    thickness: Optional[int] = None,
    pixel_center: float = PIXEL_CENTER,
) -> Union[np.ndarray, Tensor]:
    """Draws joints and limbs (OpenPose colours: a limb takes its second joint's colour) on a copy of ``image``.

    ``image`` is (H, W, 3), uint8 or float in [0, 1]; the result has the same type (numpy or torch) and dtype.
    Missing joints, and limbs touching one, are skipped.
    """
    canvas, is_uint8 = _to_uint8(image)
    height, width = canvas.shape[:2]
    thickness = thickness or max(1, round(min(height, width) / 128))
    radius = radius or 2 * thickness
    kps = torch.as_tensor(keypoints, dtype=torch.float32).cpu()
    present = keypoint_valid(kps).tolist()
    shift = 4  # cv2 fixed-point bits: sub-pixel positions
    fixed = torch.nan_to_num((kps[:, :2] - pixel_center) * (1 << shift)).round().long().tolist()
    points = [tuple(row) for row in fixed]
    for first, second in limbs:
        if present[first] and present[second]:
            cv2.line(canvas, points[first], points[second], colors[second], thickness, cv2.LINE_AA, shift)
    for joint, point in enumerate(points):
        if present[joint]:
            cv2.circle(canvas, point, radius << shift, colors[joint], -1, cv2.LINE_AA, shift)
    result = canvas if is_uint8 else canvas.astype(np.float32) / 255.0
    return torch.from_numpy(result).to(image.device) if isinstance(image, Tensor) else result


def heatmap_to_color(heatmaps: Float[Tensor, "*bs J"], colormap: str = "turbo") -> Float[Tensor, "*bs 3"]:
    """Colour image of heatmaps (channels last): maximum over joints, clamped to [0, 1], colour-mapped."""
    peak = heatmaps.detach().amax(dim=-1, keepdim=True).clamp(0.0, 1.0)
    return apply_float_colormap(peak, colormap=colormap).to(heatmaps.device)  # type: ignore[arg-type]


def embedding_to_color(embedding: Float[Tensor, "*bs D"]) -> Float[Tensor, "*bs 3"]:
    """Colour image of a dense-pose embedding: its first 3 channels clamped to [0, 1] (zero-padded if D < 3)."""
    colors = embedding.detach()[..., :3].clamp(0.0, 1.0)
    missing = 3 - colors.shape[-1]
    if missing > 0:
        colors = torch.cat([colors, colors.new_zeros(*colors.shape[:-1], missing)], dim=-1)
    return colors
