"""The command line: `websock-actors run MODULE:ATTR --host HOST --port PORT`,
`websock-actors schema|asyncapi MODULE:ATTR` to print a typed app's message documents,
`websock-actors typescript MODULE:ATTR [-o FILE]` for their TypeScript types, and
`websock-actors emit ...` to push from a script (Redis or the server API).

`run` applies `gevent.monkey.patch_all()` before it imports the application, so that
blocking standard-library calls in handlers become cooperative (`--no-patch` turns that
off). The library itself never patches; only this entry point does.

`run --workers N` (or `auto`: one per CPU) serves the port from N processes (scale/workers.py):
the workers are forked, then each imports the app and serves as a single process would;
SIGHUP replaces them one at a time with the code on disk (scale/rolling.py). Without
`--workers`, SIGHUP re-executes the server in place; `--reload` restarts it on each change
to a `.py` file. `--redis URL` puts the typed app's rooms on Redis, shared by every process.

    parser.py    the flags and their help
    loading.py   `MODULE:ATTR` imported, the typed App inside it, checked against the flags
    run.py       `run`: the flags checked, then one process, workers, or `--reload`
    serve.py     serving in this process: the single process, or one worker
    prefork.py   the master of `--workers N`: listeners, fork, supervise, steer addresses
    reexec.py    SIGHUP without workers: the new code checked, the listener kept over exec
    reload.py    `--reload`: a supervisor watching the source tree, restarting the server
    describe.py  `schema|asyncapi|typescript`: a typed app's JSON Schema, AsyncAPI or TypeScript
    emit.py      `emit`: broadcast, send-to-user, disconnect-user through an Emitter
"""

from __future__ import annotations

from .describe import describe_app
from .emit import emit
from .loading import load_app
from .parser import build_parser
from .run import run_app

__all__ = ["load_app", "main"]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        return run_app(args)
    if args.command == "emit":
        return emit(args)
    return describe_app(args)

