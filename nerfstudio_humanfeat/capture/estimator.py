"""The 2D pose estimator and person segmenter: mediapipe 0.10.14's BlazePose (full) and selfie segmentation.

mediapipe is an optional dependency (`pip install nerfstudio-humanfeat[capture]`), imported on first use only. Its
0.10.14 wheel ships `pose_landmark_full.tflite`, `pose_detection.tflite` and `selfie_segmentation.tflite`, so it runs
offline. It declares protobuf>=4.25.3, but nerfstudio pins protobuf<=3.20.3; it runs on 3.20.3 once its calculator
option extensions are registered with the pure-python protobuf runtime (`_register_protobuf_extensions`), which is
how the two coexist in one environment (install mediapipe with --no-deps plus flatbuffers: docs/capture.md).
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any, Optional, Tuple

import cv2
import numpy as np
from jaxtyping import Bool, Float, UInt8

from nerfstudio_humanfeat.capture.body25 import body25_from_blazepose

MEDIAPIPE_VERSION = "0.10.14"
INSTALL_HINT = (
    f"the pose estimator needs mediapipe {MEDIAPIPE_VERSION} (its wheel holds the models, so it works offline): "
    f"pip install 'nerfstudio-humanfeat[capture]', or, beside nerfstudio's protobuf pin, "
    f"pip install --no-deps mediapipe=={MEDIAPIPE_VERSION} flatbuffers (docs/capture.md)"
)


class EstimatorUnavailable(ImportError):
    """mediapipe is not installed (or not the wheel with the bundled models)."""


def mediapipe_available() -> bool:
    try:
        import_mediapipe()
    except EstimatorUnavailable:
        return False
    return True


_REGISTERED = False


def _register_protobuf_extensions(mp: Any) -> None:
    """With protobuf < 4 (nerfstudio's pin), register every mediapipe proto extension (the calculators' options)
    with its extended message class: protoc-4 generated modules leave that to the upb runtime, and without it the
    python runtime drops the options when mediapipe hands a graph config to C++."""
    global _REGISTERED
    import google.protobuf
    from google.protobuf import symbol_database

    if _REGISTERED or int(google.protobuf.__version__.split(".")[0]) >= 4:
        return
    modules = []
    for info in pkgutil.walk_packages(mp.__path__, prefix="mediapipe."):
        if info.name.endswith("_pb2") and ".tasks." not in info.name and "_test" not in info.name:
            try:
                modules.append(importlib.import_module(info.name))
            except Exception:  # noqa: BLE001 - a module needing an absent optional dependency has no options we use
                continue
    database = symbol_database.Default()

    def extensions(message: Any):
        yield from message.extensions
        for nested in message.nested_types:
            yield from extensions(nested)

    for module in modules:
        found = list(module.DESCRIPTOR.extensions_by_name.values())
        for message in module.DESCRIPTOR.message_types_by_name.values():
            found += list(extensions(message))
        for extension in found:
            try:
                database.GetPrototype(extension.containing_type).RegisterExtension(extension)
            except Exception:  # noqa: BLE001 - already registered
                continue
    _REGISTERED = True


def import_mediapipe() -> Any:
    """The mediapipe module, ready to run on this environment's protobuf; EstimatorUnavailable with the install
    command when it is missing."""
    try:
        import mediapipe as mp
        from mediapipe.python.solutions import pose as _pose  # noqa: F401
    except ImportError as err:
        raise EstimatorUnavailable(f"mediapipe is not installed ({err}): {INSTALL_HINT}") from err
    version = getattr(mp, "__version__", "?")
    if version != MEDIAPIPE_VERSION:
        raise EstimatorUnavailable(f"mediapipe {version} is installed, expected {MEDIAPIPE_VERSION}: {INSTALL_HINT}")
    _register_protobuf_extensions(mp)
    return mp


@dataclass
class Detection:
    """What the estimator finds in one image (pixels with centres at integers, OpenCV)."""

    keypoints: Optional[Float[np.ndarray, "25 3"]]
    """BODY_25 (x, y, confidence); missing joints NaN with confidence 0; None when no person is found."""
    mask: Optional[Bool[np.ndarray, "H W"]]
    """Foreground; None when the segmenters found nothing."""
    mask_source: str
    """'pose' (BlazePose's segmentation), 'selfie' (selfie segmentation), or 'none'."""


class MediapipePoseEstimator:
    """BlazePose full (33 landmarks, static images) and its person segmentation, with the selfie segmenter as the
    mask fallback when no pose is found. Images smaller than `min_size` are upscaled first (the detector misses
    people in very small images)."""

    def __init__(
        self,
        min_detection_confidence: float = 0.3,
        min_keypoint_confidence: float = 0.1,
        mask_threshold: float = 0.5,
        min_size: int = 256,
    ) -> None:
        mp = import_mediapipe()
        self.pose = mp.solutions.pose.Pose(
            static_image_mode=True,
            model_complexity=1,
            enable_segmentation=True,
            min_detection_confidence=min_detection_confidence,
        )
        self._mp = mp
        self._selfie = None
        self.min_keypoint_confidence = min_keypoint_confidence
        self.mask_threshold = mask_threshold
        self.min_size = min_size

    @property
    def selfie(self) -> Any:
        if self._selfie is None:
            self._selfie = self._mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)
        return self._selfie

    def _upscaled(self, image: np.ndarray) -> Tuple[np.ndarray, float]:
        scale = max(1.0, self.min_size / min(image.shape[:2]))
        if scale == 1.0:
            return image, 1.0
        size = (int(round(image.shape[1] * scale)), int(round(image.shape[0] * scale)))
        return cv2.resize(image, size, interpolation=cv2.INTER_CUBIC), scale

    def __call__(self, image: UInt8[np.ndarray, "H W 3"]) -> Detection:
        """Keypoints and mask of the most prominent person of an RGB uint8 image."""
        height, width = image.shape[:2]
        work, _ = self._upscaled(np.ascontiguousarray(image))
        result = self.pose.process(work)
        keypoints, mask, source = None, None, "none"
        if result.pose_landmarks is not None:
            landmarks = np.array([[p.x * width, p.y * height, p.visibility] for p in result.pose_landmarks.landmark])
            landmarks[:, :2] -= 0.5  # normalised image coordinates (edges at 0 and 1) -> OpenCV pixel centres
            inside = (landmarks[:, 0] >= -0.5) & (landmarks[:, 0] <= width - 0.5)
            inside &= (landmarks[:, 1] >= -0.5) & (landmarks[:, 1] <= height - 0.5)
            landmarks[~inside, 2] = 0.0  # extrapolated beyond the image: OpenPose reports none there
            keypoints = body25_from_blazepose(landmarks, self.min_keypoint_confidence)
            if result.segmentation_mask is not None:
                mask, source = self._threshold(result.segmentation_mask, (height, width)), "pose"
        if mask is None or not mask.any():
            selfie = self.selfie.process(work).segmentation_mask
            mask, source = (
                (self._threshold(selfie, (height, width)), "selfie") if selfie is not None else (None, "none")
            )
            if mask is not None and not mask.any():
                mask, source = None, "none"
        return Detection(keypoints=keypoints, mask=mask, mask_source=source)

    def _threshold(self, probability: np.ndarray, hw: Tuple[int, int]) -> np.ndarray:
        if probability.shape[:2] != hw:
            probability = cv2.resize(probability, (hw[1], hw[0]), interpolation=cv2.INTER_AREA)
        return probability > self.mask_threshold

    def close(self) -> None:
        self.pose.close()
        if self._selfie is not None:
            self._selfie.close()


def make_estimator(name: str = "mediapipe", **kwargs: Any) -> MediapipePoseEstimator:
    """The pose estimator by name (only 'mediapipe')."""
    if name != "mediapipe":
        raise ValueError(f"unknown pose estimator {name!r} (available: mediapipe)")
    return MediapipePoseEstimator(**kwargs)
