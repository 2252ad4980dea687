"""What this process may really use: CPUs and memory from its cgroup (a pod's limits), not the node's.

In a Kubernetes pod ``os.cpu_count()`` is the node's CPU count (a 2-CPU pod on a 64-core node
sees 64), so thread pools sized from it oversubscribe the pod's CPU quota and are throttled.
This module reads the limits the kernel enforces:

- **CPU**: cgroup v2 ``cpu.max`` (``"200000 100000"``: 2 CPUs; ``"max ..."``: no quota), or
  v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``; the smallest quota on the way from the
  process's own cgroup up to the root counts. :func:`available_cpus` is that quota rounded up,
  at most the CPUs the process may be scheduled on (``os.sched_getaffinity``), at least 1.
- **Memory**: v2 ``memory.max`` or v1 ``memory.limit_in_bytes`` (the smallest on the way up);
  None without a limit.

The process's cgroup comes from ``/proc/self/cgroup``; inside a container with its own cgroup
namespace that is ``/``, the container's own. Standard library only (the DAG side may use it).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")
#: v1 reports "no limit" as a huge number (the largest page-aligned 63-bit value).
_V1_UNLIMITED = 1 << 62


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, ValueError):
        return None


def _own_cgroups(proc_cgroup: Path) -> dict[str, str]:
    """Controller -> the process's cgroup path (``""`` for v2's unified hierarchy)."""
    found: dict[str, str] = {}
    for line in (_read(proc_cgroup) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        for controller in controllers.split(",") if controllers else [""]:
            found[controller] = path
    return found


def _up_from(base: Path, cgroup_path: str) -> list[Path]:
    """``base/<cgroup path>`` and each parent up to ``base`` (those that exist)."""
    folders = []
    folder = base / cgroup_path.lstrip("/")
    while True:
        if folder.is_dir():
            folders.append(folder)
        if folder == base or base not in folder.parents:
            break
        folder = folder.parent
    return folders or [base]


def _v1_folder(root: Path, controller: str) -> Path | None:
    for name in (controller, f"{controller},cpuacct", f"cpuacct,{controller}", f"{controller},cpuset"):
        if (root / name).is_dir():
            return root / name
    return None


def cpu_limit(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_SELF_CGROUP) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (``1.5``), or None when there is none."""
    own = _own_cgroups(proc_cgroup)
    limits = []
    if (root / "cgroup.controllers").is_file() or "" in own and not own.keys() - {""}:  # v2
        for folder in _up_from(root, own.get("", "/")):
            fields = (_read(folder / "cpu.max") or "").split()
            if len(fields) == 2 and fields[0] != "max":
                try:
                    quota, period = int(fields[0]), int(fields[1])
                except ValueError:
                    continue
                if quota > 0 and period > 0:
                    limits.append(quota / period)
    else:  # v1
        base = _v1_folder(root, "cpu")
        if base is not None:
            for folder in _up_from(base, own.get("cpu", "/")):
                try:
                    quota = int(_read(folder / "cpu.cfs_quota_us") or -1)
                    period = int(_read(folder / "cpu.cfs_period_us") or 0)
                except ValueError:
                    continue
                if quota > 0 and period > 0:
                    limits.append(quota / period)
    return min(limits) if limits else None


def memory_limit(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_SELF_CGROUP) -> int | None:
    """The memory limit of this process's cgroup in bytes, or None when there is none."""
    own = _own_cgroups(proc_cgroup)
    limits = []
    if (root / "cgroup.controllers").is_file() or "" in own and not own.keys() - {""}:  # v2
        for folder in _up_from(root, own.get("", "/")):
            value = _read(folder / "memory.max")
            if value and value != "max" and value.isdigit():
                limits.append(int(value))
    else:
        base = _v1_folder(root, "memory")
        if base is not None:
            for folder in _up_from(base, own.get("memory", "/")):
                value = _read(folder / "memory.limit_in_bytes")
                if value and value.isdigit() and int(value) < _V1_UNLIMITED:
                    limits.append(int(value))
    return min(limits) if limits else None


def schedulable_cpus() -> int:
    """CPUs this process may run on (its affinity mask), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def available_cpus(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_SELF_CGROUP) -> int:
    """How many threads keep this process's CPUs busy without oversubscribing its quota:
    the cgroup CPU quota rounded up (a 1.5-CPU pod gets 2), at most the schedulable CPUs, at least 1."""
    cpus = schedulable_cpus()
    quota = cpu_limit(root, proc_cgroup)
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)
