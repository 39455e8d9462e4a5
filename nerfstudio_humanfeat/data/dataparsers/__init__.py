"""Dataparsers of nerfstudio-humanfeat, registered with nerfstudio through entry points."""

from nerfstudio.plugins.registry_dataparser import DataParserSpecification

from nerfstudio_humanfeat.data.dataparsers.zju_mocap_dataparser import ZJUMocapDataParserConfig

zju_mocap_dataparser = DataParserSpecification(
    config=ZJUMocapDataParserConfig(),
    description="ZJU-MoCap (Neural Body layout) and synthetic humans in the same layout, for generalizable NeRFs",
)

__all__ = ["zju_mocap_dataparser", "ZJUMocapDataParserConfig"]
