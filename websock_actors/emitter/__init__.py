"""Push from the rest of the application: `Emitter`, a synchronous publisher for any Python
process (a Flask or Django view, a Celery task, a cron script, asyncio code via a thread).

    emitter = Emitter("redis://127.0.0.1:6379/0", numbered=True)  # the app has a ResumePolicy
    emitter = Emitter("http://127.0.0.1:8000", api_key=key)       # through the server API
    emitter.broadcast("lobby", {"type": "notice", "text": "deploy at 5"})
    emitter.send_to_user("ann", {"type": "notice", "text": "your export is ready"})
    emitter.disconnect_user("mallory", 4003, "banned")

It imports neither gevent nor the server (with `app="module:app"` the app's own imports do),
and one Emitter is shared by the threads of a process. Every method takes an
`idempotency_key`: the same key within a few minutes is done once, the repeat answers
`duplicate=True`. The way to the servers down: BackplaneUnavailable (over HTTP its subclass
ServerUnreachable) within about `timeout` seconds, never a hang; a refusal of the server
API: ApiRefusal, with the status and the server's detail.

    publisher.py   Emitter: the messages checked and encoded once, handed to a transport
    emitted.py     Emitted, what a push did; Transport, what the Emitter asks of one
    encoding.py    a message's JSON text; app= validation against the app's pushes
    over_redis.py  RedisTransport: PUBLISH and the numbering script, in the nodes' wire
    over_http.py   HttpTransport: the server API over kept-alive http.client connections
"""

from __future__ import annotations

from .emitted import Emitted
from .publisher import Emitter

__all__ = ["Emitted", "Emitter"]
