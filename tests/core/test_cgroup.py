"""The CPUs and memory a cgroup allows (:mod:`core.cgroup`), v2 and v1, and the decode threads and
decode memory the settings derive from them."""

from __future__ import annotations

import pytest

from core import cgroup
from core.settings import Settings, SettingsError

MIB = 2**20


def _cgroup_v2(tmp_path, cpu_max: str | None, memory_max: str | None, nested: str = "kubepods/pod1"):
    root = tmp_path / "cgroup"
    (root / nested).mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu memory\n")
    if cpu_max is not None:
        (root / nested / "cpu.max").write_text(cpu_max + "\n")
    if memory_max is not None:
        (root / nested / "memory.max").write_text(memory_max + "\n")
    (root / "cpu.max").write_text("max 100000\n")
    proc = tmp_path / "proc-cgroup"
    proc.write_text(f"0::/{nested}\n")
    return root, proc


def test_a_cgroup_v2_quota_of_one_and_a_half_cpus_gives_two_threads(tmp_path):
    root, proc = _cgroup_v2(tmp_path, "150000 100000", str(2 * 1024**3))
    assert cgroup.cpu_limit(root, proc) == 1.5
    assert cgroup.available_cpus(root, proc) == min(2, cgroup.schedulable_cpus())
    assert cgroup.memory_limit(root, proc) == 2 * 1024**3


def test_no_quota_means_the_schedulable_cpus(tmp_path):
    root, proc = _cgroup_v2(tmp_path, "max 100000", "max")
    assert cgroup.cpu_limit(root, proc) is None and cgroup.memory_limit(root, proc) is None
    assert cgroup.available_cpus(root, proc) == cgroup.schedulable_cpus()


def test_a_cgroup_v1_quota_is_read_too(tmp_path):
    root = tmp_path / "cgroup"
    (root / "cpu,cpuacct" / "docker" / "abc").mkdir(parents=True)
    (root / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_quota_us").write_text("50000\n")
    (root / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_period_us").write_text("100000\n")
    (root / "memory" / "docker" / "abc").mkdir(parents=True)
    (root / "memory" / "docker" / "abc" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    (root / "memory" / "memory.limit_in_bytes").write_text(str(3 * 1024**3))
    proc = tmp_path / "proc-cgroup"
    proc.write_text("4:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n")
    assert cgroup.cpu_limit(root, proc) == 0.5
    assert cgroup.available_cpus(root, proc) == 1
    assert cgroup.memory_limit(root, proc) == 3 * 1024**3  # the parent's limit counts


def test_decode_threads_default_to_the_cgroup_s_cpus_and_decode_memory_to_a_share_of_its_memory(monkeypatch):
    monkeypatch.setattr(cgroup, "available_cpus", lambda *a: 3)
    monkeypatch.setattr(cgroup, "memory_limit", lambda *a: 2 * 1024**3)
    settings = Settings.from_env({})
    assert settings.decode_threads == 3
    assert settings.decode_memory_bytes == int(0.3 * 2 * 1024**3)  # 614 MiB: above one image's 600
    monkeypatch.setattr(cgroup, "memory_limit", lambda *a: None)
    assert Settings.from_env({}).decode_memory_bytes == 1024 * MIB
    assert Settings.from_env({"IMGTAG_DECODE_MEMORY_MB": "700"}).decode_memory_bytes == 700 * MIB
    with pytest.raises(SettingsError, match="IMGTAG_DECODE_MEMORY_MB='100'.*IMGTAG_MAX_DECODE_BYTES"):
        Settings.from_env({"IMGTAG_DECODE_MEMORY_MB": "100"})
