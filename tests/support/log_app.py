"""An app for tests/server/test_json_logs.py: its authentication hook logs what a careless app would
(the request target and credentials), so the test can see them masked."""

from __future__ import annotations

import logging
from typing import Literal

from websock_actors import App, AuthRequest, Context, Message

app = App("log test")
log = logging.getLogger("log_app")


@app.authenticate
def who(request: AuthRequest) -> str:
    log.warning("upgrade %s headers=%r", request.request.path, list(request.headers))
    return "someone"


class Ping(Message):
    type: Literal["ping"]


@app.handler
def ping(msg: Ping, ctx: Context) -> None:
    return None
