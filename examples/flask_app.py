"""A Flask site and a typed WebSocket app on one port, as gevent-websocket users are used to.

    websock-actors run examples.flask_app:app --port 8000     # then open http://127.0.0.1:8000/

Plain HTTP goes to Flask; WebSocket upgrades on /ws go to the typed app below.
"""

from __future__ import annotations

from typing import Literal

from flask import Flask
from pydantic import Field

from websock_actors import App, Context, Message
from websock_actors.compat import WSGIMount

site = Flask(__name__)
greeter = App("greeter", "1.0.0")


class Greet(Message):
    type: Literal["greet"]
    name: str = Field(min_length=1, max_length=40)


class Greeting(Message):
    type: Literal["greeting"] = "greeting"
    text: str


@greeter.handler
def greet(msg: Greet, ctx: Context) -> Greeting:
    return Greeting(text=f"Hello, {msg.name}!")


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Flask + websock_actors</title></head>
<body>
<h1>Served by Flask</h1>
<form id="form"><input id="name" placeholder="your name" maxlength="40"><button>Greet</button></form>
<p id="answer"></p>
<script>
  const socket = new WebSocket("ws://" + location.host + "/ws");
  let next = 1;
  socket.onmessage = (event) => {
    const m = JSON.parse(event.data);
    document.getElementById("answer").textContent = m.type === "greeting" ? m.text : m.code + ": " + m.detail;
  };
  document.getElementById("form").onsubmit = (event) => {
    event.preventDefault();
    socket.send(JSON.stringify({type: "greet", id: next++, name: document.getElementById("name").value}));
  };
</script>
</body></html>
"""


@site.get("/")
def index() -> str:
    return PAGE


@site.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


app = WSGIMount(site.wsgi_app, greeter, websocket_path="/ws")
