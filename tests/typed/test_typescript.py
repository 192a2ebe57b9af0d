"""TypeScript types from a typed app (typed/typescript.py): the declarations of a small app,
exactly; the committed schemas/chat.d.ts matches the code; and strict `tsc` accepts a client
written against the chat's types and refuses one that names a wrong field.

The `tsc` tests look for clients/js/node_modules/.bin/tsc (the JS client's devDependencies),
then `tsc` on the PATH; without it (or without `node`) they skip, unless
WEBSOCK_ACTORS_REQUIRE_NODE=1, where they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

from examples.chat import app as chat_app
from websock_actors import App, Context, Message, ResumePolicy
from websock_actors.typed.typescript import typescript_definitions

ROOT = Path(__file__).resolve().parents[2]


class Color(str, Enum):
    RED = "red"
    GREEN = "green"


class Point(BaseModel):
    """A point on the board."""

    x: int
    y: int = 0


class Place(Message):
    """Put a piece down."""

    type: Literal["place"]
    at: Point
    color: Color = Color.RED
    label: str | None = None
    tags: list[str] = Field(default=[])
    scores: dict[str, float] = Field(default={})
    corner: tuple[int, int] = (0, 0)
    odd: int = Field(0, alias="not-an-identifier", description="A field whose name needs quotes.")


class Placed(Message):
    type: Literal["placed"] = "placed"
    at: Point
    note: str | None = None
    count: int = 0


class Clear(Message):
    type: Literal["clear"]


class Poke(Message):
    type: Literal["poke"]
    text: str = Field(min_length=1, max_length=10)


class Poked(Message):
    type: Literal["poked"] = "poked"


class Node(BaseModel):
    value: int
    children: list[Node]


class Cat(BaseModel):
    kind: Literal["cat"]


class Dog(BaseModel):
    kind: Literal["dog"]
    good: bool


class Loose(BaseModel):
    model_config = ConfigDict(extra="allow")
    a: int


class Plan(Message):
    type: Literal["plan"]
    tree: Node
    pet: Annotated[Cat | Dog, Field(discriminator="kind")]
    loose: Loose
    when: datetime
    anything: Any
    level: Literal[1, True, "max"]


class Moved(BaseModel):
    type: Literal["moved"] = "moved"
    path: list[Point]
    kind: Literal["walk", "jump"]


def board_app(resume: bool = False) -> App:
    app = App("board", "2.0.0", resume=ResumePolicy() if resume else None)
    app.push(Moved)

    @app.handler
    def place(msg: Place, ctx: Context) -> Placed:
        return Placed(at=msg.at)

    @app.handler
    def clear(msg: Clear, ctx: Context) -> None:
        return None

    @app.handler
    def poke(msg: Poke, ctx: Context) -> Poked | None:
        return None

    @app.handler
    def plan(msg: Plan, ctx: Context) -> None:
        return None

    return app


def generate(app: App) -> str:
    numbered = app.resumption is not None
    return typescript_definitions(
        app.router, app.pushes, title=app.title, version=app.version, numbered=numbered
    )


def declaration(text: str, head: str) -> str:
    """One declaration, from its doc comment (if any) to its end."""
    end = r"^\}$" if head.startswith("interface") else r";$"
    pattern = r"(?:^/\*\*[^\n]*\*/\n)?^export " + re.escape(head) + r"\b.*?" + end
    match = re.search(pattern, text, re.S | re.M)
    assert match is not None, f"no `export {head}` in:\n{text}"
    return match.group(0)


def test_requests_are_named_after_their_models_with_defaults_optional() -> None:
    text = generate(board_app())
    assert "Type1" not in text
    assert declaration(text, "interface Place") == '''\
/** Put a piece down. */
export interface Place {
  id?: string | number | null;
  type: "place";
  at: PointInput;
  /** @default "red" */
  color?: Color;
  label?: string | null;
  /** @default [] */
  tags?: string[];
  /** @default {} */
  scores?: Record<string, number>;
  /** @default [0, 0] */
  corner?: [number, number];
  /**
   * A field whose name needs quotes.
   * @default 0
   */
  "not-an-identifier"?: number;
}'''
    assert declaration(text, "type Color") == 'export type Color = "red" | "green";'
    assert declaration(text, "interface Poke") == '''\
export interface Poke {
  id?: string | number | null;
  type: "poke";
  /** @minLength 1 @maxLength 10 */
  text: string;
}'''


def test_what_the_server_sends_has_every_field_but_an_unset_id() -> None:
    text = generate(board_app())
    # A default is always sent; `id` is left out when None, so it is optional and never null.
    assert declaration(text, "interface Placed") == '''\
export interface Placed {
  id?: string | number;
  type: "placed";
  at: Point;
  note: string | null;
  count: number;
}'''
    assert declaration(text, "interface Moved") == '''\
export interface Moved {
  type: "moved";
  path: Point[];
  kind: "walk" | "jump";
}'''
    # The nested model in both directions: as the server sends it, and as a client may.
    assert "/** A point on the board. */\nexport interface Point {\n  x: number;\n  y: number;\n}" in text
    assert "export interface PointInput {\n  x: number;\n  /** @default 0 */\n  y?: number;\n}" in text
    error = declaration(text, "interface ErrorReply")
    assert "  code: string;\n  detail: string;\n  errors: Record<string, unknown>[];\n" in error
    assert "  retry_after_ms?: number;\n" in error and "  id?: string | number;\n" in error


def test_recursive_models_tagged_unions_and_extras() -> None:
    text = generate(board_app())
    assert declaration(text, "interface Plan") == '''\
export interface Plan {
  id?: string | number | null;
  type: "plan";
  tree: Node;
  pet: Cat | Dog;
  loose: Loose;
  /** @format "date-time" */
  when: string;
  anything: unknown;
  level: 1 | true | "max";
}'''
    assert "export interface Node {\n  value: number;\n  children: Node[];\n}" in text
    assert "export interface Loose {\n  a: number;\n  [key: string]: unknown;\n}" in text


def test_unions_and_the_reply_of_each_request() -> None:
    text = generate(board_app())
    assert "export type Request = Place | Clear | Poke | Plan;" in text
    assert "export type Reply = Placed | Poked | Ack;" in text
    assert "export type Push = Moved;" in text
    assert "export type ServerMessage = Placed | Poked | Moved | Ack | ErrorReply;" in text
    assert declaration(text, "interface RequestReplies") == '''\
/** What answers each request `type` (an `ErrorReply` rejects the request instead). */
export interface RequestReplies {
  place: Placed;
  clear: Ack;
  poke: Poked | Ack;
  plan: Ack;
}'''
    assert "export interface PushTypes {\n  moved: Moved;\n}" in text
    assert "export interface Protocol {\n  request: Request;\n  replies: RequestReplies;\n" in text


def test_with_resumption_a_push_may_carry_its_room_position() -> None:
    plain = declaration(generate(board_app()), "interface Moved")
    assert "seq" not in plain
    moved = declaration(generate(board_app(resume=True)), "interface Moved")
    assert "  seq?: number;\n" in moved and "  epoch?: string;\n" in moved and "  room?: string;\n" in moved
    resumable = generate(board_app(resume=True))
    assert "export type Request = Resume | Place | Clear | Poke | Plan;" in resumable
    assert "  resume: Resumed | Ack;\n" in resumable
    assert "seq" not in declaration(resumable, "interface SessionOpened")


class Request(Message):
    type: Literal["request"]


def test_a_model_named_like_a_generated_type_is_renamed() -> None:
    app = App("clash")

    @app.handler
    def request(msg: Request, ctx: Context) -> None:
        return None

    text = generate(app)
    assert "export interface Request_ {" in text
    assert "export type Request = Request_;" in text


def test_committed_chat_types_match_the_code() -> None:
    committed = (ROOT / "schemas" / "chat.d.ts").read_text()
    regenerate = "websock-actors typescript examples.chat:app -o schemas/chat.d.ts"
    assert committed == generate(chat_app), f"regenerate: {regenerate}"


# -- strict tsc on clients of the types ------------------------------------------------


@pytest.fixture(scope="session")
def tsc() -> list[str]:
    """The TypeScript compiler's command line (strict, no output)."""
    local = ROOT / "clients" / "js" / "node_modules" / ".bin" / "tsc"
    found = str(local) if local.exists() else shutil.which("tsc")
    if found is None or shutil.which("node") is None:
        reason = "node and tsc are needed (npm install in clients/js)"
        if os.environ.get("WEBSOCK_ACTORS_REQUIRE_NODE") == "1":
            pytest.fail(f"WEBSOCK_ACTORS_REQUIRE_NODE=1 but {reason}")
        pytest.skip(reason)
    options = ["--strict", "--noEmit", "--exactOptionalPropertyTypes", "--noUncheckedIndexedAccess"]
    return [found, *options, "--target", "es2022", "--module", "esnext", "--moduleResolution", "bundler"]


def compile_sample(tsc: list[str], folder: Path, types: str, sample: str) -> subprocess.CompletedProcess[str]:
    (folder / "chat.d.ts").write_text(types)
    (folder / "sample.ts").write_text(sample)
    return subprocess.run([*tsc, "sample.ts"], cwd=folder, capture_output=True, text=True, timeout=120)


# What a client library declares (clients/js): a request typed by its `type`, pushes by theirs.
CLIENT = """\
import type { ChatMessage, ErrorReply, Join, Protocol } from "./chat";

interface Client<P extends Protocol> {
  request<T extends P["request"]>(message: T): Promise<P["replies"][T["type"]]>;
  on<K extends keyof P["pushes"]>(type: K, handler: (message: P["pushes"][K]) => void): void;
  on(type: "*", handler: (message: P["server"]) => void): void;
}
declare const client: Client<Protocol>;
const request = client.request.bind(client);

export async function chat(): Promise<string[]> {
  const joined = await request({ type: "join", id: 1, room: "lobby", name: "ann" });
  const members: string[] = joined.members;
  const said = await request({ type: "say", room: "lobby", text: "hi" });
  const kind: "said" | "ack" = said.type;
  const join: Join = { type: "join", room: "lobby", name: "bob" };
  const again = await request(join);
  const room: string = again.room;
  client.on("message", (message) => {
    const line: string = `${message.name}: ${message.text} at ${message.ts.toFixed(0)}`;
    const seq: number | undefined = message.seq;
    console.log(line, seq, kind, room);
  });
  client.on("member_left", (message) => console.log(message.name));
  client.on("*", (message) => {
    if (message.type === "message") {
      const chatMessage: ChatMessage = message;
      console.log(chatMessage.text);
    } else if (message.type === "error") {
      const error: ErrorReply = message;
      const retry: number | undefined = error.retry_after_ms;
      console.log(error.code, error.detail, error.errors.length, retry);
    }
  });
  // BAD
  return members;
}
"""


def test_strict_tsc_accepts_a_client_of_the_chat_types(tsc: list[str], tmp_path: Path) -> None:
    result = compile_sample(tsc, tmp_path, (ROOT / "schemas" / "chat.d.ts").read_text(), CLIENT)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        ('const typo: Join = { type: "join", room: "lobby", nam: "ann" };', ["'nam'", "Join"]),
        ("const count: number = joined.memberz.length;", ["'memberz'", "Joined"]),
        ('client.on("message", (message) => console.log(message.txt));', ["'txt'", "ChatMessage"]),
        ('await request({ type: "say", room: "lobby", txt: "hi" });', ["'txt'", "Say"]),
    ],
    ids=["request-field", "reply-field", "push-field", "inferred-request-field"],
)
def test_strict_tsc_refuses_a_wrong_field(
    tsc: list[str], tmp_path: Path, bad: str, expected: list[str]
) -> None:
    sample = CLIENT.replace("  // BAD\n", f"  {bad}\n")
    result = compile_sample(tsc, tmp_path, (ROOT / "schemas" / "chat.d.ts").read_text(), sample)
    errors = [line for line in result.stdout.splitlines() if "error TS" in line]
    assert result.returncode != 0
    assert len(errors) == 1, result.stdout
    for word in expected:
        assert word in errors[0], errors[0]


def test_strict_tsc_accepts_every_construct_of_the_small_app(tsc: list[str], tmp_path: Path) -> None:
    sample = """\
import type { Place, Placed, Plan, RequestReplies } from "./chat";

export const place: Place = {
  type: "place", at: { x: 1 }, color: "green", label: null, corner: [1, 2], "not-an-identifier": 3,
};
export const plan: Plan = {
  type: "plan", tree: { value: 1, children: [{ value: 2, children: [] }] }, pet: { kind: "dog", good: true },
  loose: { a: 1, b: "extra" }, when: "2026-12-07T00:00:00Z", anything: [1], level: "max",
};
export function seen(placed: Placed, reply: RequestReplies["poke"]): number {
  return placed.at.y + placed.count + (reply.type === "ack" ? 0 : 1);
}
"""
    result = compile_sample(tsc, tmp_path, generate(board_app(resume=True)), sample)
    assert result.returncode == 0, result.stdout + result.stderr
