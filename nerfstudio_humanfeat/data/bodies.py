"""The SMPL body of each frame, as every method reads it: parameters, posed vertices, joints and bone transforms.

Bodies are posed on first use from the dataset's SMPL fit (ZJU convention, which every dataparser converts to) with
the body model found by ``resolve_smpl_model``: the dataparser's ``smpl_model`` option, else $HUMANFEAT_SMPL_MODEL,
else the generated model that synthetic datasets carry in ``body_model/``. Methods that need no body never load it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Dict, Optional

import torch
from jaxtyping import Float
from torch import Tensor

from nerfstudio_humanfeat.body.smpl import BodyPose, SMPLBody, resolve_smpl_model

SMPL_PARAM_KEYS = ("poses", "shapes", "Rh", "Th")


@dataclass
class FrameBody:
    """One frame's SMPL fit posed in world coordinates (metres)."""

    params: Dict[str, Tensor]
    """poses (72,) (the first three zero: the global rotation is Rh), shapes (10,), Rh (3,) axis-angle, Th (3,)."""
    pose: BodyPose
    """The posed body, a batch of one: vertices, the 24 joints, canonical-to-world bone transforms."""
    keypoints3d: Optional[Float[Tensor, "J 4"]] = None
    """The dataset's world 3D keypoints (BODY_25 with confidence) where it has them."""

    @property
    def vertices(self) -> Float[Tensor, "V 3"]:
        return self.pose.vertices[0]

    @property
    def joints(self) -> Float[Tensor, "24 3"]:
        return self.pose.joints[0]

    @property
    def bone_transforms(self) -> Float[Tensor, "24 4 4"]:
        """Canonical (rest pose) to world, per SMPL joint."""
        return self.pose.transforms[0]

    def to(self, device) -> "FrameBody":
        moved = {f.name: _to(getattr(self.pose, f.name), device) for f in fields(self.pose)}
        return FrameBody(
            {k: v.to(device) for k, v in self.params.items()},
            replace(self.pose, **moved),
            None if self.keypoints3d is None else self.keypoints3d.to(device),
        )

    def batched_params(self) -> Dict[str, Tensor]:
        """The parameters with a batch dimension of one, as ``SMPLBody`` takes them."""
        return {key: value[None] for key, value in self.params.items()}


class BodyModels:
    """Loads the SMPL model once (on first use) and poses frames, keeping the most recent ones."""

    def __init__(self, smpl_model: Optional[Path], data_root: Optional[Path], cache_size: int = 256):
        self.smpl_model, self.data_root, self.cache_size = smpl_model, data_root, cache_size
        self._model: Optional[SMPLBody] = None
        self._cache: "OrderedDict[int, FrameBody]" = OrderedDict()
        self._lock = threading.Lock()

    def __getstate__(self):
        return {"smpl_model": self.smpl_model, "data_root": self.data_root, "cache_size": self.cache_size}

    def __setstate__(self, state):
        self.__init__(state["smpl_model"], state["data_root"], state["cache_size"])

    @property
    def model(self) -> SMPLBody:
        """The body model (raises naming every place looked at when there is none)."""
        if self._model is None:
            self._model = SMPLBody.from_file(resolve_smpl_model(self.smpl_model, self.data_root))
        return self._model

    def pose(self, params: Dict[str, Tensor]) -> BodyPose:
        """Poses one set of ZJU-convention parameters (unbatched tensors)."""
        batched = {key: params[key].float().reshape(1, -1) for key in SMPL_PARAM_KEYS}
        with torch.no_grad():
            return self.model(batched["poses"], batched["shapes"], batched["Rh"], batched["Th"])

    def clear(self) -> None:
        """Forgets the posed bodies (after a frame's parameters changed)."""
        with self._lock:
            self._cache.clear()

    def body(self, frame_key: int, params: Dict[str, Tensor], keypoints3d: Optional[Tensor]) -> FrameBody:
        with self._lock:
            if frame_key in self._cache:
                self._cache.move_to_end(frame_key)
                return self._cache[frame_key]
            flat = {key: params[key].float().reshape(-1) for key in SMPL_PARAM_KEYS}
            body = FrameBody(flat, self.pose(params), keypoints3d)
            self._cache[frame_key] = body
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
            return body


def _to(value, device):
    return value.to(device) if isinstance(value, Tensor) else value
