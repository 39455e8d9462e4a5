"""A nerfstudio dataset of target views whose pixels come from the human catalog (undistorted, scaled)."""

from __future__ import annotations

from typing import Dict, List, Literal, Tuple

import torch
from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs
from nerfstudio.data.datasets.base_dataset import InputDataset

from nerfstudio_humanfeat.data.catalog import HumanCatalog


class HumanViewDataset(InputDataset):
    """Target views of a split; all splits share one catalog (and so one image cache)."""

    def __init__(self, dataparser_outputs: DataparserOutputs, scale_factor: float = 1.0):
        if scale_factor != 1.0:
            raise ValueError("HumanViewDataset does not rescale: set the dataparser's image_scale instead")
        catalog = dataparser_outputs.metadata["catalog"]
        others = {k: v for k, v in dataparser_outputs.metadata.items() if k != "catalog"}
        dataparser_outputs.metadata = others
        try:
            super().__init__(dataparser_outputs, scale_factor)
        finally:
            dataparser_outputs.metadata = {**others, "catalog": catalog}
        self.metadata["catalog"] = catalog

    @property
    def catalog(self) -> HumanCatalog:
        return self.metadata["catalog"]

    @property
    def views(self) -> List[Tuple[int, int]]:
        """(frame key, camera index) of each item."""
        return self.metadata["views"]

    @property
    def source_frame_keys(self) -> List[int]:
        """Per item, the frame key of its source views (its own frame key but for novel-pose views)."""
        return self.metadata.get("source_frame_keys") or [key for key, _ in self.views]

    @property
    def protocols(self) -> List[str]:
        """Per item, 'novel_view' or 'novel_pose'."""
        return self.metadata.get("protocols") or ["novel_view"] * len(self.views)

    def get_image_float32(self, image_idx: int) -> torch.Tensor:
        frame_key, camera = self.views[image_idx]
        return self.catalog.load_view(frame_key, camera).image

    def get_image_uint8(self, image_idx: int) -> torch.Tensor:
        frame_key, camera = self.views[image_idx]
        return self.catalog.load_view(frame_key, camera).rgb8

    def get_data(self, image_idx: int, image_type: Literal["uint8", "float32"] = "float32") -> Dict:
        frame_key, camera = self.views[image_idx]
        view = self.catalog.load_view(frame_key, camera)
        image = view.image if image_type == "float32" else view.rgb8
        return {"image_idx": image_idx, "image": image, "mask": view.mask[..., None]}
