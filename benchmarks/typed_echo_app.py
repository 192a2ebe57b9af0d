"""The typed echo of the typed-path benchmark: validate, route, answer with a model.

    websock-actors run benchmarks.typed_echo_app:app --port PORT --no-patch --ping-interval 0
"""

from __future__ import annotations

from typing import Literal

from websock_actors import App, Context, Message

app = App("typed echo")


class Echo(Message):
    type: Literal["echo"]
    text: str


class Echoed(Message):
    type: Literal["echoed"] = "echoed"
    text: str


@app.handler
def echo(msg: Echo, ctx: Context) -> Echoed:
    return Echoed(text=msg.text)
