"""What the three fuzz targets share: the command line, the libFuzzer flags, the seed corpus
and the one summary line.

    python fuzz/fuzz_X.py [--seconds N] [--max-inputs M] [libFuzzer flags] [corpus dirs]

runs for at most N seconds (libFuzzer's `-max_total_time`), or M inputs (atheris'
`-atheris_runs`), then prints one line on stdout (on a crash, before the crash report):

    fuzz_X: N inputs in S s, C crashes, peak RSS R MiB

Memory is bounded by `-rss_limit_mb=2048` and inputs by `-max_len=65536`, each input's
time by `-timeout=20` (a slower one is reported as a crash, a timeout); flags given on
the command line come after these defaults, so they win. Without a corpus directory on the
command line, new inputs go to a temporary directory that is removed at the end; the
target's seeds (generated ones and `fuzz/corpus/<target>/`) are read, never written.
Crash files go to `fuzz/crashes/` unless `-artifact_prefix=` says otherwise; given files
instead of directories, the script runs each of them once (to replay a crash).

libFuzzer ends a `-max_total_time` run with C's exit(), which skips Python's `atexit`, so
the summary is registered twice: with `atexit` (the paths that end through `sys.exit`:
`-atheris_runs`, a crash, Ctrl-C) and with the C library's `__cxa_atexit`; it prints once.
"""

from __future__ import annotations

import argparse
import atexit
import ctypes
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import atheris

FUZZ_DIR = Path(__file__).resolve().parent
RSS_LIMIT_MB = 2048
MAX_LEN = 65536
PER_INPUT_TIMEOUT_S = 20


_START = time.monotonic()  # when this module was imported: the start of the run


class _Run:
    def __init__(self, name: str) -> None:
        self.name = name
        self.inputs = 0
        self.crashes = 0
        self.start = _START
        self.printed = False
        self.cleanup: list[Path] = []

    def summary(self) -> None:
        if self.printed:
            return
        self.printed = True
        elapsed = time.monotonic() - self.start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        print(
            f"{self.name}: {self.inputs} inputs in {elapsed:.1f} s, {self.crashes} crashes,"
            f" peak RSS {peak:.0f} MiB",
            flush=True,
        )
        for path in self.cleanup:
            shutil.rmtree(path, ignore_errors=True)


# Kept alive for the life of the process: the C library calls it at exit().
_exit_hooks: list[object] = []


def _register_c_exit(func: Callable[[], None]) -> None:
    """Run `func` at C exit() (what libFuzzer calls at the end of -max_total_time)."""
    hook = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(lambda _arg: func())
    _exit_hooks.append(hook)
    libc = ctypes.CDLL(None)
    libc.__cxa_atexit(hook, None, None)


def _libfuzzer_seconds(seconds: int) -> int:
    """The -max_total_time that ends the run within `seconds` of its start.

    libFuzzer's clock starts when it is set up, after the imports, and it stops once more
    than max_total_time whole seconds have passed, i.e. up to a second late; what is left
    of the time after that goes to a guard in the target, which ends the run at the deadline.
    """
    left = seconds - (time.monotonic() - _START)
    return max(1, int(left) - 1)


def main(
    name: str,
    test_one_input: Callable[[bytes], None],
    *,
    seeds: Iterable[bytes] = (),
    seed_dirs: Iterable[Path] = (),
    flags: Iterable[str] = (),
    custom_mutator: Callable[[bytes, int, int], bytes] | None = None,
) -> None:
    parser = argparse.ArgumentParser(
        prog=f"{name}.py",
        description="Fuzz for a bounded time; other arguments go to libFuzzer (flags, corpus dirs).",
    )
    parser.add_argument("--seconds", type=int, default=10, help="stop after this many seconds (default 10)")
    parser.add_argument("--max-inputs", type=int, default=None, help="stop after this many inputs")
    args, rest = parser.parse_known_args()
    if args.seconds < 1:
        parser.error("--seconds must be at least 1")

    run = _Run(name)
    given = [a for a in rest if a.startswith("-")]
    corpus = [a for a in rest if not a.startswith("-")]
    replay = any(Path(arg).is_file() for arg in corpus)  # run these inputs once each, no seeds
    if replay:
        seeds, seed_dirs = (), ()
    elif not corpus:
        work = Path(tempfile.mkdtemp(prefix=f"{name}-corpus-"))
        run.cleanup.append(work)
        corpus.append(str(work))  # libFuzzer writes new inputs to the first directory only
    generated = list(seeds)
    if generated:
        seed_dir = Path(tempfile.mkdtemp(prefix=f"{name}-seeds-"))
        run.cleanup.append(seed_dir)
        for i, seed in enumerate(generated):
            (seed_dir / f"seed-{i:03d}").write_bytes(seed)
        corpus.append(str(seed_dir))
    corpus.extend(str(d) for d in seed_dirs if d.is_dir())

    defaults = [
        f"-rss_limit_mb={RSS_LIMIT_MB}",
        f"-max_len={MAX_LEN}",
        f"-max_total_time={_libfuzzer_seconds(args.seconds)}",
        f"-timeout={PER_INPUT_TIMEOUT_S}",
        "-print_final_stats=0",
    ]
    defaults.extend(flags)
    if not any(f.startswith("-artifact_prefix=") for f in given):
        crashes = FUZZ_DIR / "crashes"
        crashes.mkdir(exist_ok=True)
        defaults.append(f"-artifact_prefix={crashes}{os.sep}")
    if args.max_inputs is not None:
        defaults.append(f"-atheris_runs={args.max_inputs}")

    deadline = _START + args.seconds

    def counted(data: bytes) -> None:
        if time.monotonic() >= deadline:  # libFuzzer's own limit should have ended the run first
            run.summary()
            os._exit(0)
        run.inputs += 1
        try:
            test_one_input(data)
        except BaseException:
            run.crashes += 1
            run.summary()  # atheris then prints the exception and libFuzzer saves the input
            raise

    atexit.register(run.summary)
    extra = {} if custom_mutator is None else {"custom_mutator": custom_mutator}
    atheris.Setup([sys.argv[0], *defaults, *given, *corpus], counted, **extra)
    _register_c_exit(run.summary)
    atheris.Fuzz()
