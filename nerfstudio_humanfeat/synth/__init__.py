"""Synthetic multi-view human data for ns-humanfeat-synth.

`body_model` builds a procedural SMPL-format body (posed through smplx), `motions` samples parametric
motions in the ZJU parameterisation, `raycast` renders triangle meshes on the CPU, `appearance` shades
them, `background` paints what lies behind them, and `generator` writes the ZJU-MoCap layout of
docs/data_format.md.
"""
