"""Dataparsers of nerfstudio-humanfeat, registered with nerfstudio through entry points."""

import tyro
from nerfstudio.plugins.registry_dataparser import DataParserSpecification

from nerfstudio_humanfeat.data.dataparsers.human36m_dataparser import Human36MDataParserConfig
from nerfstudio_humanfeat.data.dataparsers.renderpeople_dataparser import RenderPeopleDataParserConfig
from nerfstudio_humanfeat.data.dataparsers.zju_mocap_dataparser import ZJUMocapDataParserConfig

zju_mocap_dataparser = DataParserSpecification(
    config=ZJUMocapDataParserConfig(),
    description="ZJU-MoCap (Neural Body layout) and synthetic humans in the same layout, for generalizable NeRFs",
)
human36m_dataparser = DataParserSpecification(
    config=Human36MDataParserConfig(),
    description="Human3.6M as Animatable NeRF processed it (S1/Posing/...), Animatable NeRF's split and views",
)
renderpeople_dataparser = DataParserSpecification(
    config=RenderPeopleDataParserConfig(),
    description="RenderPeople in SHERF's layout (img/camera0000/0000.jpg, cameras.json, smplx fits), SHERF's split",
)

HUMAN_DATAPARSERS = {
    "zju-mocap": ZJUMocapDataParserConfig(),
    "human36m": Human36MDataParserConfig(),
    "renderpeople": RenderPeopleDataParserConfig(),
}
"""The dataparsers the human datamanager takes, by their registered names."""

HumanDataParserConfig = tyro.extras.subcommand_type_from_defaults(HUMAN_DATAPARSERS, prefix_names=False)
"""ns-train's dataparser subcommand (zju-mocap by default): `ns-train ghnerf --data <root> human36m`. Dataparser
options follow the subcommand: `... zju-mocap --pipeline.datamanager.dataparser.eval-max-views 2`."""

__all__ = [
    "zju_mocap_dataparser",
    "human36m_dataparser",
    "renderpeople_dataparser",
    "HUMAN_DATAPARSERS",
    "HumanDataParserConfig",
    "ZJUMocapDataParserConfig",
    "Human36MDataParserConfig",
    "RenderPeopleDataParserConfig",
]
