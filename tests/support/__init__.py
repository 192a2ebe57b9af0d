"""The test suite's helpers, one home for all of them.

apps.py            applications the tests serve (the chat demo per node, a recording echo)
                   and checks of numbered broadcasts
chat.py            client steps of the chat demo (join, say, resume, read until a message)
frames.py          frames written and read by hand (the one frame reader), and builders for
                   the protocol's sans-I/O objects
raw.py             raw sockets: RawClient, upgrade requests, HTTP answers, free ports
waits.py           polling until a condition holds
websock_thread.py  WebSock's WebSocketServer in a thread with its own hub
redis_server.py    real redis-server processes and their fixtures
pid_app.py         an app that answers with its worker's PID, or spins the CPU (for --workers)
log_app.py         an app that logs (for --log-format json)
users_app.py       an app whose clients are users (send_to_user, disconnect_user)
api_app.py         the users app with rooms: the tests of the server API (/_api/)
test_redis_server.py  the Redis fixtures' own tests

A server under test runs in `websock_actors.testing.ServerThread` (the `serve` fixture).
"""
