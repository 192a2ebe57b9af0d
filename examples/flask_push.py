"""A Flask site in a process of its own that pushes into the chat (examples/chat.py).

The chat runs as usual, with Redis; this site is a plain Flask app (no gevent, any WSGI
server, any number of processes) whose views push into the chat's rooms through an Emitter:

    websock-actors run examples.chat:app --port 8000 --redis redis://127.0.0.1:6379/0
    flask --app examples.flask_push run --port 5000
    curl -d text="deploy at 5" http://127.0.0.1:5000/announce/lobby    # {"seq": 7, ...}

`CHAT_PUSH_URL` says where the chat is: a redis:// URL (default redis://127.0.0.1:6379/0),
or the chat server's http:// URL, through its server API, with the key in
`WEBSOCK_ACTORS_API_KEY` (for a chat run without Redis).
"""

from __future__ import annotations

import os
import time
from typing import Any

from flask import Flask, request

from websock_actors.emitter import Emitter
from websock_actors.errors import ApiRefusal, BackplaneUnavailable

site = Flask(__name__)

# One Emitter per process, shared by every thread of the WSGI server. The chat resumes
# sessions (its ResumePolicy), so its rooms are numbered: every announcement gets its place
# in the room's history, and a client cut while it was sent gets it when it resumes.
emitter = Emitter(os.environ.get("CHAT_PUSH_URL", "redis://127.0.0.1:6379/0"), numbered=True, timeout=2.0)


@site.post("/announce/<room>")
def announce(room: str) -> tuple[dict[str, Any], int]:
    """Say `text` (a form field) in `room` as "announcer"; an `Idempotency-Key` header makes a
    retried request announce once."""
    text = request.form.get("text", "").strip()
    if not text or len(text) > 500:
        return {"error": "text: 1 to 500 characters"}, 400
    message = {"type": "message", "room": room, "name": "announcer", "text": text, "ts": time.time()}
    try:
        done = emitter.broadcast(room, message, idempotency_key=request.headers.get("Idempotency-Key"))
    except BackplaneUnavailable:  # Redis, or the chat server over HTTP (ServerUnreachable)
        return {"error": "the chat cannot be reached"}, 503
    except ApiRefusal as refused:  # over HTTP: the chat's API refused it (a wrong key, say)
        return {"error": f"the chat refused the announcement: {refused.detail}"}, 502
    return {"seq": done.seq, "epoch": done.epoch, "duplicate": done.duplicate}, 200
