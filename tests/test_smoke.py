from websockets.sync.client import connect

from examples.echo import app


def test_echo_text_and_binary(serve):
    server = serve(app)
    with connect(server.url) as ws:
        ws.send("hello")
        assert ws.recv(timeout=5) == "hello"
        ws.send(b"\x00\xff" * 40000)
        assert ws.recv(timeout=5) == b"\x00\xff" * 40000
