"""Conversions between OpenCV cameras (the datasets, projection into source views) and nerfstudio cameras."""

from __future__ import annotations

from typing import Tuple, Union

import torch
from jaxtyping import Float
from nerfstudio.cameras.cameras import Cameras
from torch import Tensor

_FLIP_YZ = torch.tensor([1.0, -1.0, -1.0])


def invert_rigid(transform: Float[Tensor, "*bs 3 4"]) -> Float[Tensor, "*bs 3 4"]:
    """Inverse of a rigid [R | t] transform."""
    rot_t = transform[..., :3].transpose(-1, -2)
    return torch.cat([rot_t, -rot_t @ transform[..., 3:]], dim=-1)


def opengl_c2w_from_opencv_w2c(world_to_camera: Float[Tensor, "*bs 3 4"]) -> Float[Tensor, "*bs 3 4"]:
    """nerfstudio's camera-to-world (x right, y up, z back) from an OpenCV world-to-camera transform."""
    c2w = invert_rigid(world_to_camera)
    flip = _FLIP_YZ.to(c2w)
    return torch.cat([c2w[..., :3] * flip, c2w[..., 3:]], dim=-1)


def opencv_w2c_from_opengl_c2w(camera_to_world: Float[Tensor, "*bs 3 4"]) -> Float[Tensor, "*bs 3 4"]:
    """OpenCV world-to-camera from nerfstudio's camera-to-world."""
    flip = _FLIP_YZ.to(camera_to_world)
    c2w_cv = torch.cat([camera_to_world[..., :3] * flip, camera_to_world[..., 3:]], dim=-1)
    return invert_rigid(c2w_cv)


def intrinsics_matrix(fx: Tensor, fy: Tensor, cx: Tensor, cy: Tensor) -> Float[Tensor, "*bs 3 3"]:
    """Pinhole K from its four parameters (each of shape *bs)."""
    zeros, ones = torch.zeros_like(fx), torch.ones_like(fx)
    rows = [torch.stack([fx, zeros, cx], -1), torch.stack([zeros, fy, cy], -1), torch.stack([zeros, zeros, ones], -1)]
    return torch.stack(rows, dim=-2)


def opencv_from_cameras(camera: Cameras) -> Tuple[Float[Tensor, "3 3"], Float[Tensor, "3 4"], int, int]:
    """K, OpenCV world-to-camera, height and width of the first camera of a nerfstudio `Cameras`."""
    flat = camera.flatten()[0:1] if camera.shape else camera.reshape((1,))
    intrinsics = intrinsics_matrix(flat.fx[0, 0], flat.fy[0, 0], flat.cx[0, 0], flat.cy[0, 0]).float()
    world_to_camera = opencv_w2c_from_opengl_c2w(flat.camera_to_worlds[0]).float()
    return intrinsics, world_to_camera, int(flat.height[0, 0]), int(flat.width[0, 0])


def cameras_from_opencv(
    intrinsics: Float[Tensor, "N 3 3"],
    world_to_camera: Float[Tensor, "N 3 4"],
    height: Union[int, Tensor],
    width: Union[int, Tensor],
    **kwargs,
) -> Cameras:
    """nerfstudio perspective `Cameras` from OpenCV intrinsics and world-to-camera transforms."""
    return Cameras(
        camera_to_worlds=opengl_c2w_from_opencv_w2c(world_to_camera),
        fx=intrinsics[:, 0, 0:1],
        fy=intrinsics[:, 1, 1:2],
        cx=intrinsics[:, 0, 2:3],
        cy=intrinsics[:, 1, 2:3],
        height=height,
        width=width,
        **kwargs,
    )


def look_at_world_to_camera(
    eye: Float[Tensor, "3"], target: Float[Tensor, "3"], up: Float[Tensor, "3"] = torch.tensor([0.0, 0.0, 1.0])
) -> Float[Tensor, "3 4"]:
    """OpenCV world-to-camera of a camera at `eye` looking at `target`, with `up` pointing up in the image."""
    forward = torch.nn.functional.normalize(target - eye, dim=0)
    right = torch.nn.functional.normalize(torch.linalg.cross(forward, up.to(eye)), dim=0)
    down = torch.linalg.cross(forward, right)
    rotation = torch.stack([right, down, forward])
    return torch.cat([rotation, (-rotation @ eye)[:, None]], dim=1)
