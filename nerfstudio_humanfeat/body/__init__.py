"""The shared SMPL body component: posing, blend-weight grids, backward / forward skinning, triangulation."""

from nerfstudio_humanfeat.body.canonical_box import CanonicalBox, neutral_box
from nerfstudio_humanfeat.body.skinning import (
    SkinnedPoints,
    SurfaceWeights,
    WeightGrid,
    backward_skin,
    blend_weight_grid,
    forward_skin,
    frame_weight_source,
    nearest_surface,
    sample_weights,
    with_background,
)
from nerfstudio_humanfeat.body.smpl import BodyPose, SMPLBody, big_pose, resolve_smpl_model, smplx_to_zju
from nerfstudio_humanfeat.body.triangulation import project, triangulate_consistent, triangulate_dlt
from nerfstudio_humanfeat.body.weight_field import ForwardWeightField

__all__ = [
    "BodyPose",
    "CanonicalBox",
    "ForwardWeightField",
    "SMPLBody",
    "SkinnedPoints",
    "SurfaceWeights",
    "WeightGrid",
    "backward_skin",
    "big_pose",
    "blend_weight_grid",
    "forward_skin",
    "frame_weight_source",
    "nearest_surface",
    "neutral_box",
    "project",
    "resolve_smpl_model",
    "sample_weights",
    "smplx_to_zju",
    "triangulate_consistent",
    "triangulate_dlt",
    "with_background",
]
