"""`emit`: a push from a script or an operator's shell, through an Emitter.

    websock-actors emit --redis redis://127.0.0.1:6379/0 --numbered broadcast lobby '{"type": ...}'
    websock-actors emit --api http://127.0.0.1:8000 send-to-user ann '{"type": "notice", ...}'
    websock-actors emit --api http://127.0.0.1:8000 disconnect-user ann --code 4003 --reason banned

The API key comes from --api-key-file or $WEBSOCK_ACTORS_API_KEY, as for `run` (never a
flag: a command line is visible to every user of the host). What happened is printed as one
JSON line (the Emitted's fields). Exit status: 0 done (a duplicate too), 1 refused by the
server API, 2 a usage error (bad flags, JSON or message), 3 Redis or the server unreachable.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any

from ..errors import ApiRefusal, BackplaneUnavailable, ConfigurationError
from .run import read_api_key

__all__ = ["EXIT_REFUSED", "EXIT_UNREACHABLE", "EXIT_USAGE", "emit"]

EXIT_REFUSED = 1
EXIT_USAGE = 2  # argparse's own for bad flags
EXIT_UNREACHABLE = 3


def emit(args: argparse.Namespace) -> int:
    try:
        emitter, call = _prepared(args)
    except (ValueError, TypeError, ConfigurationError) as exc:
        return _fail(EXIT_USAGE, str(exc))
    try:
        done = call(emitter)
    except ApiRefusal as exc:
        return _fail(EXIT_REFUSED, str(exc))
    except BackplaneUnavailable as exc:
        return _fail(EXIT_UNREACHABLE, exc.detail)
    except (ValueError, TypeError) as exc:  # the message or the close code (pydantic's errors too)
        return _fail(EXIT_USAGE, str(exc))
    finally:
        emitter.close()
    print(json.dumps(dataclasses.asdict(done)), flush=True)
    return 0


def _prepared(args: argparse.Namespace) -> tuple[Any, Any]:
    """The Emitter and what to call on it; ValueError for what the user got wrong."""
    from ..emitter import Emitter

    api_key = None
    if args.api is not None:
        try:
            read_api_key(args)
        except SystemExit as exc:
            raise ValueError(str(exc).removeprefix("error: ")) from None
        if args.api_key is None:
            raise ValueError("--api needs the key: --api-key-file PATH or $WEBSOCK_ACTORS_API_KEY")
        api_key = args.api_key
    elif args.api_key_file is not None:
        raise ValueError("--api-key-file is for --api")
    emitter = Emitter(
        args.redis or args.api, api_key=api_key, app=args.app, key_prefix=args.key_prefix,
        timeout=args.timeout, numbered=args.numbered,
    )  # fmt: skip
    once = args.idempotency_key
    if args.action == "disconnect-user":
        code, reason = args.code, args.reason
        return emitter, lambda e: e.disconnect_user(args.identity, code, reason, idempotency_key=once)
    try:
        message = json.loads(args.message)
    except ValueError as exc:
        emitter.close()
        raise ValueError(f"the message is not JSON: {exc}") from None
    if args.action == "broadcast":
        return emitter, lambda e: e.broadcast(args.room, message, idempotency_key=once)
    return emitter, lambda e: e.send_to_user(args.identity, message, idempotency_key=once)


def _fail(status: int, text: str) -> int:
    print(f"error: {text}", file=sys.stderr, flush=True)
    return status


def add_emit_parser(commands: Any) -> None:
    """The flags of `emit` (called by parser.py)."""
    emit = commands.add_parser(
        "emit", help="push into a room, to a user, or close a user's connections, from a script",
        description="Exit status: 0 done, 1 refused by the server API, 2 usage, 3 unreachable.",
    )  # fmt: skip
    to = emit.add_mutually_exclusive_group(required=True)
    to.add_argument("--redis", metavar="URL", help="straight into the servers' Redis (their --redis)")
    to.add_argument("--api", metavar="URL", help="through a server's API, e.g. http://127.0.0.1:8000")
    emit.add_argument(
        "--api-key-file", metavar="PATH", help="with --api: the key (default: $WEBSOCK_ACTORS_API_KEY)"
    )
    emit.add_argument(
        "--numbered", action="store_true",
        help="with --redis: the app has resumption on (broadcasts get a seq and an epoch)",
    )  # fmt: skip
    emit.add_argument("--idempotency-key", metavar="KEY", help="the same key within 300 s is done once")
    emit.add_argument("--key-prefix", default="wsa", metavar="PREFIX", help="with --redis (default: wsa)")
    emit.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS", help="(default: 5)")
    emit.add_argument("--app", metavar="MODULE:ATTR", help="check messages against this app's pushes first")
    actions = emit.add_subparsers(dest="action", required=True)
    broadcast = actions.add_parser("broadcast", help="to every member of ROOM on every node")
    broadcast.add_argument("room", metavar="ROOM")
    broadcast.add_argument("message", metavar="JSON", help='the message, e.g. \'{"type": "notice", ...}\'')
    send = actions.add_parser("send-to-user", help="to every connection of a user, on every node")
    send.add_argument("identity", metavar="IDENTITY")
    send.add_argument("message", metavar="JSON")
    kick = actions.add_parser("disconnect-user", help="close every connection of a user, on every node")
    kick.add_argument("identity", metavar="IDENTITY")
    kick.add_argument("--code", type=int, default=4000, help="the close code (default: 4000)")
    kick.add_argument("--reason", default="", help="the close reason (123 bytes at most)")
