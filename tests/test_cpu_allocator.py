"""CPU allocator settings: the environment for new processes, glibc's thresholds in this one, and the trainer hook."""

from __future__ import annotations

import copy
import platform
import subprocess
import sys

from nerfstudio_humanfeat.configs import method_configs
from nerfstudio_humanfeat.engine import cpu_allocator, trainer
from nerfstudio_humanfeat.engine.cpu_allocator import ENVIRONMENT, allocator_environment, keep_freed_memory


def test_allocator_environment_adds_the_settings_and_keeps_what_the_user_set():
    env = allocator_environment({"PATH": "/bin", "GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})
    assert env["PATH"] == "/bin"
    assert env["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2"
    assert env["THP_MEM_ALLOC_ENABLE"] == "1"
    tunables = dict(item.split("=") for item in ENVIRONMENT["GLIBC_TUNABLES"].split(":"))
    assert int(tunables["glibc.malloc.mmap_threshold"]) == cpu_allocator.MMAP_THRESHOLD
    assert int(tunables["glibc.malloc.trim_threshold"]) == cpu_allocator.TRIM_THRESHOLD


def test_shell_exports_set_the_missing_variables_in_a_shell():
    script = f'eval "$({sys.executable} -m nerfstudio_humanfeat.engine.cpu_allocator)"; '
    script += 'echo "$THP_MEM_ALLOC_ENABLE|$GLIBC_TUNABLES"'
    env = {"PATH": "/usr/bin:/bin", "THP_MEM_ALLOC_ENABLE": "0"}
    out = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, check=True).stdout
    thp, tunables = out.strip().split("|")
    assert thp == "0", "a variable the user set is kept"
    assert tunables == ENVIRONMENT["GLIBC_TUNABLES"]


def test_keep_freed_memory_applies_on_glibc_only():
    assert keep_freed_memory() == (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc")


def test_the_trainer_keeps_freed_memory_on_the_cpu_unless_turned_off(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(trainer, "keep_freed_memory", lambda: calls.append(1) or True)
    config = copy.deepcopy(method_configs.ghnerf.config)
    config.output_dir = tmp_path
    config.machine.device_type = "cpu"
    config.setup(local_rank=0, world_size=1)
    assert calls == [1]
    config.cpu_keep_freed_memory = False
    config.setup(local_rank=0, world_size=1)
    assert calls == [1]
