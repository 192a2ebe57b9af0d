"""WebSock's chat example on websock_actors: only the import changed.

Users chat in one shared room; every message goes to everyone else, and a bot answers.
Open examples/websock_chat.html in a browser (it connects to ws://127.0.0.1:8467).

    python examples/websock_chat.py

The first line makes blocking calls in the callbacks cooperative: under gevent every
client's callbacks run in their own greenlet, and patch_all() turns sleeps, sockets and
threads of the standard library into greenlet-friendly ones, so one slow callback never
stalls the other clients. It must run before anything else is imported.
"""
from gevent import monkey; monkey.patch_all()  # noqa: E702, I001

import os

from websock_actors import WebSocketServer

PORT = int(os.environ.get("CHAT_PORT", "8467"))
BOT_PREFIX = "@BOT: "

# Connected users by peer address.
users = {}


class User:
    def __init__(self, address, client):
        self.address = address
        self.client = client


def bot_reply(message):
    return BOT_PREFIX + "How are you today?"


def on_data_receive(client, data):
    """Forward a message to everyone else, then let the bot answer everyone."""
    server.send_all(client, data)
    server.send_all(client, bot_reply(data), echo=True)


def on_connection_open(client):
    server.send(client, "Hello, welcome to the chat server!")
    address = client.getpeername()
    users[address] = User(address, client)


def on_error(exception):
    print("chat server error:", exception)


def on_connection_close(client):
    users.pop(client.getpeername(), None)


def on_server_destruct():
    print("chat server stopping")


server = WebSocketServer(
    "",
    PORT,
    on_data_receive=on_data_receive,
    on_connection_open=on_connection_open,
    on_error=on_error,
    on_connection_close=on_connection_close,
    on_server_destruct=on_server_destruct,
)

if __name__ == "__main__":
    server.serve_forever()
