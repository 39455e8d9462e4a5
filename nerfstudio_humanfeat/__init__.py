"""nerfstudio-humanfeat: generalizable human NeRFs with biomechanic features for nerfstudio."""

from nerfstudio_humanfeat._compat import allow_numpy_in_checkpoints

allow_numpy_in_checkpoints()

__version__ = "0.1.0"
