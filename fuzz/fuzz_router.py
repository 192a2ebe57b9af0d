"""Fuzz the typed router's decoding: Router.decode on bytes and on str.

A small app of three tagged models (str, int, optional fields, a list of a nested model
that nests itself, a dict keyed by the client's strings) is registered and built once;
each input goes to `decode` as bytes, and as str when it is UTF-8.

Only InvalidMessage may come out, and it must stay bounded whatever the frame: at most 20
errors listed, no `loc` item over 200 characters once rendered with str(), a detail of at
most 300 characters. A frame must decode to the same message as bytes and as str.

Seeds: fuzz/corpus/router/ (hand-written JSON). pydantic validates in Rust, where atheris
sees no coverage, so half of the mutations are structural: the input is parsed as JSON, one
value in it is replaced (a long string or key, a long integer, a wrong type, a long list, a
deep nesting, another tag) and it is written back; the other half are libFuzzer's own,
helped by the JSON tokens of fuzz/router.dict.

    python fuzz/fuzz_router.py --seconds 60
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Literal

import _harness
import atheris
from pydantic import BaseModel, Field

with atheris.instrument_imports(include=["websock_actors"]):
    from websock_actors.errors import InvalidMessage
    from websock_actors.typed import Message, Router

FUZZ_DIR = Path(__file__).resolve().parent
SEED_DIR = FUZZ_DIR / "corpus" / "router"
DICT = FUZZ_DIR / "router.dict"
MAX_ERRORS = 20
MAX_LOC_ITEM = 200
MAX_DETAIL = 300


class Item(BaseModel):
    name: str
    qty: int
    children: list[Item] = []


class Chat(Message):
    type: Literal["chat"]
    room: str
    text: str
    reply_to: int | None = None


class Order(Message):
    type: Literal["order"]
    customer: str
    items: list[Item]
    note: str | None = None


class Move(Message):
    type: Literal["move"]
    x: int
    y: int
    labels: dict[str, int] = Field(default_factory=dict)


def on_chat(msg: Chat, ctx: object) -> None:
    pass


def on_order(msg: Order, ctx: object) -> None:
    pass


def on_move(msg: Move, ctx: object) -> None:
    pass


router = Router()
for handler in (on_chat, on_order, on_move):
    router.add(handler)
router.build()
MODELS = (Chat, Order, Move)


def _check_invalid(exc: InvalidMessage) -> None:
    assert len(exc.errors) <= MAX_ERRORS, f"{len(exc.errors)} errors listed"
    for error in exc.errors:
        loc = error["loc"]
        assert isinstance(loc, list | tuple), loc
        for item in loc:
            assert len(str(item)) <= MAX_LOC_ITEM, f"loc item of {len(str(item))} characters"
    assert len(exc.detail) <= MAX_DETAIL, f"detail of {len(exc.detail)} characters: {exc.detail[:80]!r}..."


def _decode(data: str | bytes) -> BaseModel | None:
    try:
        message = router.decode(data)
    except InvalidMessage as exc:
        _check_invalid(exc)
        return None
    assert isinstance(message, MODELS), message
    return message


def test_one_input(data: bytes) -> None:
    from_bytes = _decode(data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return
    from_text = _decode(text)
    assert from_bytes == from_text, (from_bytes, from_text)


# -- the structure-aware half of the mutations -----------------------------------------------

TEMPLATES: list[dict[str, object]] = [
    {"type": "chat", "id": 1, "room": "lobby", "text": "hi", "reply_to": None},
    {"type": "order", "id": "o", "customer": "c", "items": [{"name": "n", "qty": 1, "children": []}]},
    {"type": "move", "x": 1, "y": 2, "labels": {"a": 1}},
]
TAGS = ("chat", "order", "move", "", "\x00", "Chat", "ack", "error")
KEYS = (
    "type",
    "id",
    "room",
    "text",
    "reply_to",
    "customer",
    "items",
    "note",
    "name",
    "qty",
    "children",
    "x",
    "y",
    "labels",
)


def _leaf(rng: random.Random) -> object:
    kind = rng.randrange(10)
    if kind == 0:
        return rng.choice("kü✓\ud800\x00") * rng.choice((1, 65, 201, 301, 5000))
    if kind == 1:
        return int("9" * rng.randint(1, 4300)) * rng.choice((1, -1))  # 4300: int()'s digit limit
    if kind == 2:
        return rng.choice((0, -1, 2**63, -(2**63) - 1, 1.5, 1e308, -0.0, True, False, None))
    if kind == 3:
        return rng.choice(TAGS)
    if kind == 4:
        return {"k" * rng.choice((1, 65, 201, 3000)): rng.choice((1, "x", None, [], {}))}
    if kind == 5:
        return [rng.choice((1, "x", None, {}, {"name": 1, "qty": "x"}))] * rng.choice((2, 21, 500, 3000))
    if kind == 6:
        value: object = rng.choice((1, "x", {"name": "n", "qty": "q"}))
        for _ in range(rng.choice((2, 50, 199, 201, 400))):
            value = [value] if rng.random() < 0.5 else {"name": "n", "qty": 1, "children": [value]}
        return value
    return dict(rng.choice(TEMPLATES))


def _mutate_value(value: object, rng: random.Random, depth: int = 0) -> object:
    """`value` with one node somewhere in it replaced, added or removed."""
    if depth < 20 and rng.random() < 0.7:
        if isinstance(value, dict) and value:
            key = rng.choice(list(value))
            out = dict(value)
            out[key] = _mutate_value(value[key], rng, depth + 1)
            return out
        if isinstance(value, list) and value:
            i = rng.randrange(len(value))
            return [*value[:i], _mutate_value(value[i], rng, depth + 1), *value[i + 1 :]]
    if isinstance(value, dict) and rng.random() < 0.5:
        out = dict(value)
        key = rng.choice(KEYS) if rng.random() < 0.8 else "k" * rng.choice((65, 201, 1000))
        if key in out and rng.random() < 0.3:
            del out[key]
        else:
            out[key] = _leaf(rng)
        return out
    return _leaf(rng)


def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    if rng.random() < 0.5:
        return atheris.Mutate(data, max_size)
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        value = rng.choice(TEMPLATES)
    try:
        out = json.dumps(_mutate_value(value, rng), ensure_ascii=rng.random() < 0.5).encode(
            "utf-8", "surrogatepass"
        )
    except (ValueError, RecursionError):  # an int over the digit limit, a nesting too deep
        return atheris.Mutate(data, max_size)
    return out if len(out) <= max_size else atheris.Mutate(data, max_size)


if __name__ == "__main__":
    _harness.main(
        "fuzz_router",
        test_one_input,
        seed_dirs=[SEED_DIR],
        flags=[f"-dict={DICT}"],
        custom_mutator=custom_mutator,
    )
