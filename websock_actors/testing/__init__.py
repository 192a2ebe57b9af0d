"""Testing applications: serve an app on a loopback socket in-process and talk to it.

    from websock_actors.testing import TestClient

    def test_greet():
        with TestClient(app) as client, client.connect() as ws:
            assert ws.request({"type": "greet", "name": "ann"})["text"] == "hello ann"

The modules:

    server_thread.py  ServerThread: a Server in a background OS thread with its own hub
    client.py         TestClient, TestConnection: waits that fail with what did arrive
    pytest_plugin.py  the `websock_client` and `websock_server` fixtures (a pytest plugin)
"""

from .client import TestClient, TestConnection
from .server_thread import ServerThread

__all__ = ["ServerThread", "TestClient", "TestConnection"]
