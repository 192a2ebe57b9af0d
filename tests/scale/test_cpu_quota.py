"""`--workers auto` under a CPU limit (scale/cpu_quota.py): min(cores in the affinity mask,
the cgroup's CFS quota rounded up), at least 1.

The cgroup trees are fake ones in a tmp dir, laid out as the kernel mounts them (cgroup v2,
v1, and the hybrid of systemd hosts); the affinity case runs the real command line with its
affinity narrowed to one core.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from websock_actors.scale.cpu_quota import available_cpus, cpu_quota
from websock_actors.scale.workers import parse_workers

from ..support.raw import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
EIGHT = set(range(8))


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def _v2(tmp_path: Path, own: str, limits: dict[str, str]) -> tuple[Path, Path]:
    """A cgroup v2 mount at tmp/cgroup (cpu.max in each of `limits`' dirs) and a
    /proc/self/cgroup placing the process in `own`."""
    root = tmp_path / "cgroup"
    _write(root / "cgroup.controllers", "cpuset cpu io memory pids")
    for directory, value in limits.items():
        _write(root / directory.strip("/") / "cpu.max", value)
    (root / own.strip("/")).mkdir(parents=True, exist_ok=True)
    own_file = tmp_path / "self_cgroup"
    _write(own_file, f"0::{own}")
    return root, own_file


def _v1(
    tmp_path: Path, own: str, limits: dict[str, tuple[int, int]], mount: str = "cpu,cpuacct"
) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    for directory, (quota, period) in limits.items():
        _write(root / mount / directory.strip("/") / "cpu.cfs_quota_us", str(quota))
        _write(root / mount / directory.strip("/") / "cpu.cfs_period_us", str(period))
    own_file = tmp_path / "self_cgroup"
    _write(own_file, f"12:pids:{own}\n4:cpu,cpuacct:{own}\n3:memory:{own}\n0::{own}")
    return root, own_file


def test_v2_quota_rounds_up(tmp_path: Path) -> None:
    root, own = _v2(tmp_path, "/system.slice/chat.service", {"/system.slice/chat.service": "150000 100000"})
    assert cpu_quota(root, own) == 1.5
    assert available_cpus(root, own, affinity=EIGHT) == 2  # the half core is still used


def test_v2_without_a_quota_counts_the_affinity(tmp_path: Path) -> None:
    root, own = _v2(tmp_path, "/system.slice/chat.service", {"/system.slice/chat.service": "max 100000"})
    assert cpu_quota(root, own) is None
    assert available_cpus(root, own, affinity=EIGHT) == 8
    assert available_cpus(root, own, affinity={2, 5}) == 2


def test_v2_an_ancestors_quota_binds_too(tmp_path: Path) -> None:
    # A pod's limit on its slice, none on the container: the slice's counts.
    root, own = _v2(
        tmp_path,
        "/kubepods.slice/pod1/ctr",
        {"/kubepods.slice/pod1": "300000 100000", "/kubepods.slice/pod1/ctr": "max 100000"},
    )
    assert cpu_quota(root, own) == 3.0
    assert available_cpus(root, own, affinity=EIGHT) == 3
    _write(root / "kubepods.slice/pod1/ctr/cpu.max", "50000 100000")  # tighter below: it wins
    assert available_cpus(root, own, affinity=EIGHT) == 1


def test_v2_in_a_container_namespace(tmp_path: Path) -> None:
    # The container sees its own cgroup as "/" at the mount's top.
    root, own = _v2(tmp_path, "/", {"/": "200000 100000"})
    assert available_cpus(root, own, affinity=EIGHT) == 2


def test_the_affinity_mask_wins_when_smaller(tmp_path: Path) -> None:
    root, own = _v2(tmp_path, "/a", {"/a": "400000 100000"})
    assert available_cpus(root, own, affinity={3}) == 1


def test_a_tiny_quota_still_gets_one_worker(tmp_path: Path) -> None:
    root, own = _v2(tmp_path, "/a", {"/a": "10000 100000"})
    assert cpu_quota(root, own) == pytest.approx(0.1)
    assert available_cpus(root, own, affinity=EIGHT) == 1


def test_v1_quota_and_period(tmp_path: Path) -> None:
    root, own = _v1(tmp_path, "/docker/abc", {"/docker/abc": (250000, 100000)})
    assert cpu_quota(root, own) == 2.5
    assert available_cpus(root, own, affinity=EIGHT) == 3


def test_v1_minus_one_is_no_quota(tmp_path: Path) -> None:
    root, own = _v1(tmp_path, "/docker/abc", {"/docker/abc": (-1, 100000), "/": (-1, 100000)})
    assert cpu_quota(root, own) is None
    assert available_cpus(root, own, affinity=EIGHT) == 8


def test_v1_container_with_the_hosts_path_listed(tmp_path: Path) -> None:
    # /proc/self/cgroup names the host's path, but the container's mount shows its own cgroup.
    root, own = _v1(tmp_path, "/docker/abc", {"/": (100000, 50000)}, mount="cpu")
    assert available_cpus(root, own, affinity=EIGHT) == 2


def test_hybrid_host_reads_the_unified_mount(tmp_path: Path) -> None:
    # systemd's hybrid layout: cpu on no v1 hierarchy, cgroup v2 at /sys/fs/cgroup/unified.
    root = tmp_path / "cgroup"
    _write(root / "unified/user.slice/cpu.max", "100000 100000")
    _write(root / "memory/cgroup.procs", "")
    own = tmp_path / "self_cgroup"
    _write(own, "4:memory:/user.slice\n0::/user.slice")
    assert available_cpus(root, own, affinity=EIGHT) == 1


@pytest.mark.parametrize(
    "contents",
    ["", "garbage", "0::/a\n"],  # the last: v2 with no cpu.max anywhere
)
def test_nothing_readable_means_no_limit(tmp_path: Path, contents: str) -> None:
    root = tmp_path / "cgroup"
    _write(root / "cgroup.controllers", "")
    own = tmp_path / "self_cgroup"
    own.write_text(contents)
    assert cpu_quota(root, own) is None
    assert available_cpus(root, own, affinity=EIGHT) == 8
    assert cpu_quota(root, tmp_path / "missing") is None


@pytest.mark.parametrize("value", ["x 100000", "100000 0", "100000", "-5 100000"])
def test_a_malformed_cpu_max_is_ignored(tmp_path: Path, value: str) -> None:
    root, own = _v2(tmp_path, "/a", {"/a": value})
    assert cpu_quota(root, own) is None


def test_auto_is_the_available_cpus_of_this_process() -> None:
    assert parse_workers("auto") == available_cpus()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores to narrow to one")
@pytest.mark.timeout(60)
def test_run_workers_auto_follows_the_affinity_mask(tmp_path: Path) -> None:
    # As `taskset -c 0 websock-actors run ... --workers auto`: one core, so one process (a
    # single worker is served without a master).
    command = [
        sys.executable, "-m", "websock_actors", "run", "tests.support.pid_app:app",
        "--port", str(free_port()), "--workers", "auto",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        preexec_fn=lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}),
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        serving = r"websock-actors: serving tests\.support\.pid_app:app on ws://\S+\n"
        assert re.fullmatch(serving, first), first
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
