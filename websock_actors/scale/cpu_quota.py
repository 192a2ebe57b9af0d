"""How many CPUs this process may use: `--workers auto` under a container's CPU quota.

`os.cpu_count()` counts the host's cores, so in a container limited to 2 CPUs on a 64-core
host it would fork 64 workers, each hub then getting a thirtieth of a core and every worker
paying for its memory. The limit comes from two places, and the smaller wins:

- the affinity mask (`taskset`, `docker --cpuset-cpus`, systemd's `CPUAffinity=`): whole cores;
- the CFS bandwidth quota of the process's cgroup and of each cgroup above it (`docker --cpus`,
  Kubernetes' CPU limit, systemd's `CPUQuota=`): cgroup v2 `cpu.max` ("QUOTA PERIOD", or "max"),
  cgroup v1 `cpu.cfs_quota_us` and `cpu.cfs_period_us` (a quota of -1: none). A quota of
  1.5 CPUs rounds up to 2 workers: the half core is still there to use.

Only the files are read (no cgroup library); anything missing or unreadable means "no limit".
`root` and `cgroup_file` are parameters so that tests can point them at fake trees.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["available_cpus", "cpu_quota"]

CGROUP_ROOT = Path("/sys/fs/cgroup")
SELF_CGROUP = Path("/proc/self/cgroup")


def available_cpus(
    root: Path = CGROUP_ROOT, cgroup_file: Path = SELF_CGROUP, affinity: set[int] | None = None
) -> int:
    """min(cores in the affinity mask, the CPU quota rounded up), at least 1.

    `affinity`: the mask's cores (None: this process's own, or os.cpu_count() where the
    platform has no affinity call)."""
    cores = len(affinity) if affinity is not None else _own_affinity()
    quota = cpu_quota(root, cgroup_file)
    if quota is not None:
        cores = min(cores, math.ceil(quota))
    return max(1, cores)


def cpu_quota(root: Path = CGROUP_ROOT, cgroup_file: Path = SELF_CGROUP) -> float | None:
    """The tightest CFS quota over this process's cgroup and its ancestors, in CPUs
    (quota / period); None when none is set or none can be read."""
    try:
        lines = cgroup_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    v2_path: str | None = None
    for line in lines:
        number, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if number == "0" and controllers == "":
            v2_path = path
        elif "cpu" in controllers.split(","):  # a v1 hierarchy holds the cpu controller
            mount = _v1_mount(root, controllers)
            return None if mount is None else _tightest(mount, path, _v1_limit)
    if v2_path is None:
        return None
    mount = root if (root / "cgroup.controllers").exists() else root / "unified"  # pure or hybrid
    return _tightest(mount, v2_path, _v2_limit)


def _own_affinity() -> int:
    getter = getattr(os, "sched_getaffinity", None)
    if getter is not None:
        return len(getter(0))
    return os.cpu_count() or 1


def _v1_mount(root: Path, controllers: str) -> Path | None:
    """Where the v1 hierarchy with the cpu controller is mounted: `cpu,cpuacct` (often with a
    `cpu` link to it), or `cpu` alone."""
    for name in (controllers, "cpu", "cpu,cpuacct", "cpuacct,cpu"):
        if (root / name).is_dir():
            return root / name
    return None


def _tightest(mount: Path, path: str, read: Callable[[Path], float | None]) -> float | None:
    """The smallest limit from the process's cgroup up to the mount. In a container the
    listed path is often the host's (/docker/ID) while the mount shows the container's own
    cgroup at its top: a path that does not exist under the mount means the top."""
    directory = mount / path.strip("/")
    if not directory.is_dir():
        directory = mount
    limits: list[float] = []
    while True:
        limit = read(directory)
        if limit is not None:
            limits.append(limit)
        if directory == mount or mount not in directory.parents:
            break
        directory = directory.parent
    return min(limits) if limits else None


def _v2_limit(directory: Path) -> float | None:
    """cpu.max: "max 100000" (no limit) or "200000 100000" (2 CPUs)."""
    fields = _read(directory / "cpu.max").split()
    if len(fields) != 2 or fields[0] == "max":
        return None
    return _ratio(fields[0], fields[1])


def _v1_limit(directory: Path) -> float | None:
    """cpu.cfs_quota_us (-1: no limit) over cpu.cfs_period_us."""
    return _ratio(_read(directory / "cpu.cfs_quota_us"), _read(directory / "cpu.cfs_period_us"))


def _ratio(quota: str, period: str) -> float | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    if q <= 0 or p <= 0:
        return None
    return q / p


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""
