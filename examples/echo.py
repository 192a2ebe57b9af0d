"""Echo every text and binary message back unchanged.

    websock-actors run examples.echo:app --port 8000
    websock-actors run examples.echo:inline_app --port 8000

`inline_app` is the same echo declared `inline`: its handler never blocks, so the server
runs it in the event loop's readiness callback instead of switching into the connection's
greenlet for every message (see `Application.inline`).
"""

from websock_actors import Connection, WebSocketApp

app = WebSocketApp()
inline_app = WebSocketApp(inline=True)


@app.on_message
@inline_app.on_message
def echo(conn: Connection, message: str | bytes) -> None:
    conn.send(message)
