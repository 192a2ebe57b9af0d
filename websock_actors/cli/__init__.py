"""The command line: `websock-actors run MODULE:ATTR --host HOST --port PORT`,
`websock-actors schema|asyncapi MODULE:ATTR` to print a typed app's message documents,
`websock-actors typescript MODULE:ATTR [-o FILE]` for their TypeScript types, and
`websock-actors emit ...` to push from a script (Redis or the server API).

`run` applies `gevent.monkey.patch_all()` before it imports the application, so that
blocking standard-library calls in handlers become cooperative (`--no-patch` turns that
off). The library itself never patches; only this entry point does.

`run --workers N` (or `auto`: one per CPU) serves the port from N processes (scale/workers.py):
the app is imported and checked once, then the workers are forked, each serving as a single
process would. `--redis URL` puts the typed app's rooms on Redis, shared by every process.

    parser.py    the flags and their help
    loading.py   `MODULE:ATTR` imported; the typed App inside it
    run.py       `run`: the flags checked, the app prepared, one process or workers
    serve.py     serving in this process: the single process, or one worker
    prefork.py   the master of `--workers N`: fork, supervise, steer client addresses
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

