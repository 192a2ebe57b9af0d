"""Figures of a process read from /proc: CPU time, RSS, open fds, system calls, children.

`pid` may be "self". Functions raise OSError once the process is gone, unless they say otherwise.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

__all__ = [
    "CLK_TCK", "children", "cpu_ns", "cpu_seconds", "cpu_times", "fd_count", "machine_cpu", "own_cpu_seconds",
    "rss_kib", "start_time", "status_kib", "syscalls"
]

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int | str) -> list[str]:
    """The fields of /proc/PID/stat from the third (the state) on: the command name before it
    may hold spaces and parentheses, so the split starts after its last ')'."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def cpu_times(pid: int | str) -> tuple[float, float]:
    """User and system CPU seconds of `pid` so far (utime, stime: fields 14 and 15 of stat(5))."""
    fields = _stat_fields(pid)
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def cpu_seconds(pid: int | str) -> float:
    """User + system CPU seconds of `pid` so far, in clock ticks (10 ms)."""
    user, system = cpu_times(pid)
    return user + system


def own_cpu_seconds() -> float:
    """User + system CPU seconds of this process (getrusage: finer than the ticks of /proc)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_ns(pid: int) -> int:
    """Nanoseconds on a CPU of every thread of `pid`, from /proc/PID/task/*/schedstat (finer
    than the clock ticks of `cpu_seconds`)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            pass
    return total


def start_time(pid: int) -> int | None:
    """The start time of `pid` (tells it from a later one given its PID); None once gone or a zombie."""
    try:
        fields = _stat_fields(pid)
    except OSError:
        return None
    return None if fields[0] in "ZX" else int(fields[19])


def status_kib(pid: int | str, key: str) -> int:
    """A kB figure of /proc/PID/status (VmRSS, VmHWM, ...); 0 when it has none (a zombie)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def rss_kib(pid: int | str) -> int:
    """The resident set size of `pid` (VmRSS) in KiB."""
    return status_kib(pid, "VmRSS")


def fd_count(pid: int) -> int:
    """Open file descriptors of `pid`."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def syscalls(pid: int) -> dict[str, int]:
    """Read and write system calls of `pid` so far (syscr, syscw of /proc/PID/io: read(2),
    write(2) and the like; recv/send on sockets are not counted, libuv's read(2) of a socket is)."""
    with open(f"/proc/{pid}/io") as f:
        fields = dict(line.split(": ") for line in f.read().splitlines())
    return {"reads": int(fields["syscr"]), "writes": int(fields["syscw"])}


def children(pid: int) -> list[int]:
    """The PIDs whose parent is `pid`, in order."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = _stat_fields(entry.name)
            except (OSError, ValueError):
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return sorted(found)


def machine_cpu() -> dict[str, float]:
    """CPU seconds of the whole machine so far (/proc/stat): busy (all but idle, iowait and
    steal), steal (time the hypervisor gave to others)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return {"busy": (user + nice + system + irq + softirq) / CLK_TCK, "steal": steal / CLK_TCK}
