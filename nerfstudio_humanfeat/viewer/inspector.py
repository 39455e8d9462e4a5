"""The viewer as a human-feature inspector: it opens on the person, draws 3D skeletons, shows the source views.

nerfstudio's viewer finds GUI elements and ``ViewerControl`` objects on the model's ``nn.Module`` tree, so the
inspector is a parameter-free module of the model. Everything drawn lives under ``/humanfeat`` in the viser scene, in
viser's units (nerfstudio world x ``VISER_NERFSTUDIO_SCALE_RATIO``; this plugin's world is the dataset's, metres).
"""

from __future__ import annotations

import threading
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import viser.transforms as vtf
from jaxtyping import Float
from nerfstudio.viewer.viewer import VISER_NERFSTUDIO_SCALE_RATIO
from nerfstudio.viewer.viewer_elements import ViewerCheckbox, ViewerControl, ViewerSlider, ViewerText
from torch import Tensor, nn

from nerfstudio_humanfeat.data.catalog import CameraRig, HumanCatalog
from nerfstudio_humanfeat.keypoints import keypoint_valid
from nerfstudio_humanfeat.skeleton import BODY25_LIMBS

PREDICTED_COLOR = (255, 140, 0)
"""Skeleton of the predicted 3D keypoints (orange; see ``keypoints_3d_method``)."""
GROUND_TRUTH_COLOR = (0, 200, 255)
"""Skeleton of the dataset's 3D joints (cyan)."""
SOURCE_COLOR = (255, 60, 60)
"""Frustums of the source cameras of the last render (red)."""
ROOT = "/humanfeat"


def skeleton_segments(
    keypoints: Float[Tensor, "J 4"], limbs: Sequence[Tuple[int, int]] = BODY25_LIMBS
) -> List[Tuple[np.ndarray, np.ndarray]]:
    """The (start, end) world points of every limb whose two joints are present."""
    valid = keypoint_valid(keypoints.detach().cpu())
    points = keypoints.detach().cpu().double().numpy()[:, :3]
    return [(points[a], points[b]) for a, b in limbs if a < len(points) and b < len(points) and valid[a] and valid[b]]


def viser_camera_pose(camera_to_world_opencv: Float[Tensor, "3 4"]) -> Tuple[np.ndarray, np.ndarray]:
    """(wxyz, position) of an OpenCV camera-to-world transform in viser's scene (viser's cameras are OpenCV's)."""
    c2w = camera_to_world_opencv.detach().double().cpu().numpy()
    return vtf.SO3.from_matrix(c2w[:, :3]).wxyz, c2w[:, 3] * VISER_NERFSTUDIO_SCALE_RATIO


def vertical_fov(rig: CameraRig, camera: int) -> float:
    """Vertical field of view (radians) of a rig camera, as viser's cameras take it."""
    return 2.0 * float(np.arctan(rig.height / (2.0 * float(rig.intrinsics[camera, 1, 1]))))


class _ViewerHook(ViewerControl):
    """A ViewerControl that hands the viewer to a callback once the viewer has set it up."""

    def __init__(self, on_setup: Callable[[object], None]) -> None:
        self._on_setup = on_setup

    def _setup(self, viewer) -> None:
        super()._setup(viewer)
        self._on_setup(viewer)


class HumanInspector(nn.Module):
    """Viewer controls of a human model: 3D skeleton, number and list of source views, initial camera.

    Args:
        catalog: the dataset's subjects, frames and cameras.
        num_source_views: the model's number of source views (the slider's default).
        opening_view: (frame key, camera) that the viewer's camera starts at: a target camera of an evaluation subject.
        shown_frame_key: the frame the viewer's Subject/Frame controls currently pick.
        keypoints_3d: a frame's predicted 3D keypoints (J, 4) (``keypoints_3d_method``).
        on_viewer: called once the viewer is set up (the model makes its Subject/Frame controls drive the render).
    """

    def __init__(
        self,
        catalog: HumanCatalog,
        num_source_views: int,
        opening_view: Tuple[int, int],
        shown_frame_key: Callable[[], int],
        keypoints_3d: Callable[[int], Tensor],
        on_viewer: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__()
        self.catalog = catalog
        self.opening_view = opening_view
        self._shown_frame_key = shown_frame_key
        self._keypoints_3d = keypoints_3d
        self._on_viewer = on_viewer
        self._viewer = None
        self._server = None
        self._nodes: Dict[str, List] = {}
        self._lock = threading.Lock()
        self._drawn_sources: Optional[Tuple[int, Tuple[int, ...]]] = None
        max_views = max(len(s.rig) for s in catalog.subjects)
        self.hook = _ViewerHook(self.attach)
        self.show_skeleton = ViewerCheckbox(
            "3D skeleton",
            False,
            cb_hook=lambda _: self.refresh(),
            hint="Orange: the predicted 3D keypoints of the shown subject/frame; cyan: the dataset's "
            "joints. Turns 'Composite depth' off, which would hide the joints inside the rendered body",
        )
        self.num_source_views = ViewerSlider(
            "Source views",
            num_source_views,
            1,
            max(max_views - 1, 1),
            1,
            hint="Number of nearest source views that condition each render",
        )
        self.source_cameras = ViewerText(
            "Source cameras", "–", disabled=True, hint="Cameras of the last render's source views (red frustums)"
        )

    # ------------------------------------------------------------------ viser
    def attach(self, viewer) -> None:
        """Start every new browser tab on the opening view (the viewer's default looks from inside the person)."""
        self._viewer, self._server = viewer, viewer.viser_server
        self._server.on_client_connect(self.frame_client)
        self._on_viewer()

    def replace_nodes(self, group: str, add: Callable[[], List]) -> None:
        """Remove the scene nodes of `group` and store the ones `add` creates."""
        for handle in self._nodes.pop(group, []):
            handle.remove()
        self._nodes[group] = add()

    def frame_client(self, client) -> None:
        """Move a client's camera to the opening view: the dataset camera's pose, field of view and up direction,
        orbiting around the frame's box centre."""
        frame_key, camera = self.opening_view
        rig = self.catalog.subject(frame_key).rig
        c2w = rig.camera_to_world[camera]
        wxyz, position = viser_camera_pose(c2w)
        box = self.catalog.frame(frame_key).bbox.double()
        centre = box.mean(0).numpy() * VISER_NERFSTUDIO_SCALE_RATIO
        fov = vertical_fov(rig, camera)
        with client.atomic():
            client.camera.fov = fov
            client.camera.up_direction = -c2w[:, 1].double().numpy()
            client.camera.position = position
            client.camera.look_at = centre
            client.camera.wxyz = wxyz

    # ------------------------------------------------------------------ skeleton
    def refresh(self) -> None:
        """Redraw the skeletons for the shown frame (or remove them when the checkbox is off)."""
        if self._server is None:
            return
        with self._lock:
            if not self.show_skeleton.value:
                self.replace_nodes("skeleton", list)
                return
            panel = getattr(self._viewer, "control_panel", None)
            if panel is not None and hasattr(panel, "_layer_depth"):  # nerfstudio has no public setter for it
                panel._layer_depth.value = False
            frame_key = self._shown_frame_key()
            skeletons = [("predicted", self._keypoints_3d(frame_key).detach().cpu(), PREDICTED_COLOR)]
            truth = self.catalog.frame(frame_key).keypoints3d
            if truth is not None:
                skeletons.append(("ground_truth", truth, GROUND_TRUTH_COLOR))
            self.replace_nodes(
                "skeleton",
                lambda: [h for name, kps, color in skeletons for h in self.draw_skeleton(name, kps, color)],
            )

    def draw_skeleton(self, name: str, keypoints: Float[Tensor, "J 4"], color: Tuple[int, int, int]) -> List:
        """Limbs as line segments and joints as points under ``/humanfeat/skeleton/<name>``; returns the nodes."""
        server, scale, root = self._server, VISER_NERFSTUDIO_SCALE_RATIO, f"{ROOT}/skeleton/{name}"
        nodes = [
            server.scene.add_spline_catmull_rom(
                f"{root}/limb_{index:02d}", positions=np.stack([start, end]) * scale, color=color, line_width=4.0
            )
            for index, (start, end) in enumerate(skeleton_segments(keypoints))
        ]
        present = keypoint_valid(keypoints.detach().cpu())
        if bool(present.any()):
            points = keypoints.detach().cpu().double().numpy()[present.numpy(), :3] * scale
            colors = np.tile(np.asarray(color, dtype=np.uint8), (len(points), 1))
            nodes.append(server.scene.add_point_cloud(f"{root}/joints", points=points, colors=colors, point_size=0.3))
        return nodes

    # ------------------------------------------------------------------ source views
    def show_sources(self, frame_key: int, cameras: Sequence[int]) -> None:
        """List and highlight the source cameras of a render (drawn again only when they change)."""
        key = (frame_key, tuple(int(c) for c in cameras))
        if self._server is None or key == self._drawn_sources:
            return
        self._drawn_sources = key
        subject = self.catalog.subject(frame_key)
        self.source_cameras.value = ", ".join(subject.rig.names[c] for c in key[1])
        rig = subject.rig

        def frustums() -> List:
            nodes = []
            for camera in key[1]:
                wxyz, position = viser_camera_pose(rig.camera_to_world[camera])
                nodes.append(
                    self._server.scene.add_camera_frustum(
                        f"{ROOT}/sources/camera_{camera:03d}",
                        fov=vertical_fov(rig, camera),
                        aspect=rig.width / rig.height,
                        scale=0.3,
                        color=SOURCE_COLOR,
                        wxyz=wxyz,
                        position=position,
                    )
                )
            return nodes

        with self._lock:
            self.replace_nodes("sources", frustums)

    def forward(self) -> None:  # a container of viewer controls: nothing to compute
        raise NotImplementedError("HumanInspector holds viewer controls; it is not called")


def opening_view(catalog: HumanCatalog, frame_key: int) -> Tuple[int, int]:
    """(frame key, camera) the viewer opens on: the frame's first target camera (else its first camera)."""
    subject = catalog.subject(frame_key)
    cameras = subject.target_cameras or subject.source_cameras or list(range(len(subject.rig)))
    return frame_key, int(cameras[0])
