"""Echo every text and binary message back unchanged.

    websock-actors run examples.echo:app --port 8000
"""

from websock_actors import Connection, WebSocketApp

app = WebSocketApp()


@app.on_message
def echo(conn: Connection, message: str | bytes) -> None:
    conn.send(message)
