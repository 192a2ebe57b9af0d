"""The typed echo of the typed-path benchmark: validate, route, answer with a model.

    websock-actors run benchmarks.typed_echo_app:app --port PORT --no-patch --ping-interval 0

`inline_app` is the same echo declared inline (`App(inline=True)`): run in the readiness
callback, like `examples.echo:inline_app` on the raw side.
"""

from __future__ import annotations

from typing import Literal

from websock_actors import App, Context, Message

app = App("typed echo")
inline_app = App("typed echo", inline=True)


class Echo(Message):
    type: Literal["echo"]
    text: str


class Echoed(Message):
    type: Literal["echoed"] = "echoed"
    text: str


@app.handler
@inline_app.handler
def echo(msg: Echo, ctx: Context) -> Echoed:
    return Echoed(text=msg.text)
