"""A live stock dashboard: a producer actor pushes simulated prices to subscribers.

    websock-actors run examples.ticker:app --port 8000      # then open http://127.0.0.1:8000/

  {"type": "subscribe", "id"?, "symbols": [...]}    -> {"type": "subscribed", "id", "symbols"}
  {"type": "unsubscribe", "id"?, "symbols": [...]}  -> {"type": "unsubscribed", "id", "symbols"}
  pushed several times a second to each symbol's subscribers:
      {"type": "price", "symbol", "price", "ts"}
Each symbol is a room; the producer broadcasts every tick once per symbol, so a price is
serialized and framed once however many clients watch it.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any, Literal

import gevent
from pydantic import BaseModel, Field, field_validator

from websock_actors import Actor, App, Context, Message

SYMBOLS = {"ACME": 120.0, "GLOBEX": 48.0, "INITECH": 23.5, "UMBRELLA": 77.0}
TICK_SECONDS = 0.25

app = App("websock_actors ticker", "1.0.0")
app.page("/", (Path(__file__).parent / "ticker.html").read_bytes())


class Symbols(Message):
    symbols: list[str] = Field(min_length=1, max_length=len(SYMBOLS))

    @field_validator("symbols")
    @classmethod
    def known(cls, symbols: list[str]) -> list[str]:
        unknown = sorted(set(symbols) - SYMBOLS.keys())
        if unknown:
            raise ValueError(f"unknown symbols {unknown}; known: {sorted(SYMBOLS)}")
        return symbols


class Subscribe(Symbols):
    type: Literal["subscribe"]


class Subscribed(Message):
    type: Literal["subscribed"] = "subscribed"
    symbols: list[str]


class Unsubscribe(Symbols):
    type: Literal["unsubscribe"]


class Unsubscribed(Message):
    type: Literal["unsubscribed"] = "unsubscribed"
    symbols: list[str]


@app.push
class Price(BaseModel):
    type: Literal["price"] = "price"
    symbol: str
    price: float
    ts: float


def room(symbol: str) -> str:
    return f"price:{symbol}"


@app.handler
def subscribe(msg: Subscribe, ctx: Context) -> Subscribed:
    for symbol in msg.symbols:
        ctx.join(room(symbol))
    return Subscribed(symbols=sorted(s for s in SYMBOLS if ctx.in_room(room(s))))


@app.handler
def unsubscribe(msg: Unsubscribe, ctx: Context) -> Unsubscribed:
    for symbol in msg.symbols:
        ctx.leave(room(symbol))
    return Unsubscribed(symbols=msg.symbols)


class Producer(Actor):
    """Moves every price by a small random step each tick and broadcasts it."""

    def __init__(self) -> None:
        self.prices = dict(SYMBOLS)
        self.random = random.Random()
        self._clock: gevent.Greenlet[Any, Any] | None = None

    def on_start(self) -> None:
        self._clock = gevent.spawn(self._tick_forever)

    def on_stop(self) -> None:
        if self._clock is not None:
            self._clock.kill(block=False)

    def _tick_forever(self) -> None:
        while True:
            gevent.sleep(TICK_SECONDS)
            self.tick()

    def tick(self) -> None:
        now = time.time()
        for symbol, price in self.prices.items():
            price = max(1.0, round(price * (1 + self.random.gauss(0, 0.004)), 2))
            self.prices[symbol] = price
            app.broadcast(room(symbol), Price(symbol=symbol, price=price, ts=now))


app.add_actor("producer", Producer)
