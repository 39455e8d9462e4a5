"""nerfstudio-humanfeat: generalizable human NeRFs with biomechanic features for nerfstudio."""

from nerfstudio_humanfeat._compat import allow_numpy_in_checkpoints, find_venv_ffmpeg, silence_upstream_noise

silence_upstream_noise()
allow_numpy_in_checkpoints()
find_venv_ffmpeg()

__version__ = "0.1.0"
