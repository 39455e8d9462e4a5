"""Turning a user's calibrated multi-view capture into a ZJU-MoCap dataset (`ns-humanfeat-process`).

One concept per module: `calibration` (camera readers: nerfstudio transforms.json, COLMAP text model, ZJU annots.npy),
`capture_folder` (camera folders and frames by file name), `body25` (BlazePose -> OpenPose BODY_25 mapping),
`estimator` (the mediapipe pose landmarker and segmenter, an optional dependency), `hull` (the mask fallback),
`writer` (the ZJU-MoCap layout) and `pipeline` (the whole processing run). Only `estimator` imports mediapipe, and
only when it is called.
"""
