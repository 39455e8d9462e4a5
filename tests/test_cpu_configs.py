"""CPU without incantations: `<method>-cpu` variants hold the CPU settings, and ns-train falls back to the CPU."""

from __future__ import annotations

import copy

import pytest
import torch
import tyro
from nerfstudio.configs.method_configs import AnnotatedBaseConfigUnion

from nerfstudio_humanfeat.configs import method_configs
from nerfstudio_humanfeat.configs.cpu import apply_flags, cpu_overrides

METHODS = ["ghnerf", "ghnerf-dino", "enerf-heatmap", "hfnerf", "keypointnerf", "anipixel"]


@pytest.mark.parametrize("method", METHODS)
def test_cpu_variant_is_the_method_with_the_cpu_flags_parsed_by_ns_train(method: str) -> None:
    """The registered variant against ns-train's own parse of the base method plus the CPU flags."""
    variant = tyro.cli(AnnotatedBaseConfigUnion, args=[f"{method}-cpu"])
    flagged = tyro.cli(AnnotatedBaseConfigUnion, args=[method, *cpu_overrides(method)])
    assert variant.method_name == f"{method}-cpu" and variant.machine.device_type == "cpu"
    assert variant.pipeline.model == flagged.pipeline.model
    assert variant.pipeline.datamanager == flagged.pipeline.datamanager
    assert variant.optimizers == flagged.optimizers and variant.machine == flagged.machine
    for name in ("steps_per_eval_batch", "steps_per_eval_image", "steps_per_save", "max_num_iterations"):
        assert getattr(variant, name) == getattr(flagged, name), name
    assert variant.vis == "viewer" and flagged.vis == "tensorboard"  # how a run is watched stays nerfstudio's
    base = tyro.cli(AnnotatedBaseConfigUnion, args=[method])
    assert base.pipeline.model != variant.pipeline.model or base.pipeline.datamanager != variant.pipeline.datamanager


def test_apply_flags_types_values_and_names_unknown_fields() -> None:
    config = tyro.cli(AnnotatedBaseConfigUnion, args=["hfnerf"])
    apply_flags(config, ["--pipeline.model.hidden-dim", "32", "--optimizers.fields.optimizer.lr", "2e-4"])
    apply_flags(config, ["--viewer.quit-on-train-completion", "True", "--machine.device-type", "cpu"])
    assert config.pipeline.model.hidden_dim == 32 and config.optimizers["fields"]["optimizer"].lr == 2e-4
    assert config.viewer.quit_on_train_completion is True and config.machine.device_type == "cpu"
    with pytest.raises(AttributeError, match="hidden_dimension"):
        apply_flags(config, ["--pipeline.model.hidden-dimension", "3"])
    with pytest.raises(ValueError, match="True or False"):
        apply_flags(config, ["--viewer.quit-on-train-completion", "yes"])


def test_without_cuda_ns_train_uses_the_cpu_and_says_so_once(monkeypatch, capsys) -> None:
    config = copy.deepcopy(method_configs.ghnerf.config)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert not config.use_cpu_without_cuda() and config.machine.device_type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert config.use_cpu_without_cuda() and config.machine.device_type == "cpu"
    assert not config.use_cpu_without_cuda()  # settled: said once
    out = capsys.readouterr().out
    assert out.count("no CUDA device, training on the CPU") == 1 and "ghnerf-cpu" in out


def test_configs_saved_when_the_trainer_config_lived_in_engine_distributed_still_load() -> None:
    import yaml

    from nerfstudio_humanfeat.engine.trainer import HumanTrainerConfig

    config = yaml.load(
        "!!python/object:nerfstudio_humanfeat.engine.distributed.HumanTrainerConfig {method_name: ghnerf}",
        Loader=yaml.Loader,
    )
    assert type(config) is HumanTrainerConfig and config.method_name == "ghnerf"
