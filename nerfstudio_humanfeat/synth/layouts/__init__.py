"""Writers of the synthetic data in the layouts of other datasets (the ZJU-MoCap writer is in synth/generator.py).

- h36m: Animatable NeRF's processed Human3.6M (`S1/Posing/annots.npy`, `new_params/`, `lbs/` ...).
- renderpeople: SHERF's RenderPeople (`img/camera0000/0000.jpg`, `cameras.json`, `refit_smpl_2nd.npz` ...).
"""
