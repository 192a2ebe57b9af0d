"""The committed schemas of the chat app match the code, and the CLI prints them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from examples.chat import app

ROOT = Path(__file__).resolve().parents[2]


def test_committed_json_schema_matches_the_code() -> None:
    committed = json.loads((ROOT / "schemas" / "chat.schema.json").read_text())
    assert committed == app.json_schema(), "regenerate: websock-actors schema examples.chat:app"


def test_committed_asyncapi_matches_the_code() -> None:
    committed = json.loads((ROOT / "schemas" / "chat.asyncapi.json").read_text())
    assert committed == app.asyncapi(), "regenerate: websock-actors asyncapi examples.chat:app"


def test_schema_lists_what_the_app_accepts_and_sends() -> None:
    document = app.json_schema()
    accepts = document["$defs"]["ClientMessage"]["discriminator"]["mapping"]
    sends = document["$defs"]["ServerMessage"]["discriminator"]["mapping"]
    assert set(accepts) == {"join", "say", "leave", "resume"}
    assert set(sends) == {
        *("joined", "said", "left", "member_joined", "member_left", "message", "ack", "error"),
        *("session", "resumed", "room_lost"),  # the chat resumes sessions
    }
    message = document["$defs"]["ChatMessage"]["properties"]
    assert message["seq"]["type"] == "integer" and message["epoch"]["type"] == "string"
    assert "seq" not in document["$defs"]["SessionOpened"]["properties"]
    assert set(document["$defs"]["Resume"]["required"]) == {"type", "session"}
    say = document["$defs"]["Say"]
    assert say["properties"]["text"]["maxLength"] == 2000
    assert set(say["required"]) == {"type", "room", "text"}


def test_asyncapi_has_an_operation_per_message_with_replies() -> None:
    document = app.asyncapi()
    assert document["asyncapi"] == "3.0.0"
    operations = document["operations"]
    assert operations["receive_join"]["action"] == "receive"
    replies = [m["$ref"] for m in operations["receive_join"]["reply"]["messages"]]
    assert replies == ["#/channels/websocket/messages/joined", "#/channels/websocket/messages/error"]
    assert operations["send_member_joined"]["action"] == "send"
    for ref in (m["$ref"] for m in document["channels"]["websocket"]["messages"].values()):
        name = ref.rsplit("/", 1)[-1]
        payload = document["components"]["messages"][name]["payload"]["$ref"]
        assert payload.rsplit("/", 1)[-1] in document["components"]["schemas"]


def test_cli_prints_the_same_documents() -> None:
    for command, expected in (("schema", app.json_schema()), ("asyncapi", app.asyncapi())):
        out = subprocess.run(
            [sys.executable, "-m", "websock_actors", command, "examples.chat:app"],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
        ).stdout
        assert json.loads(out) == expected


def asyncapi_schema(tmp_path_factory) -> dict[str, object]:
    """The AsyncAPI 3.0.0 JSON Schema, from the spec's own npm package (@asyncapi/specs)."""
    folder = tmp_path_factory.mktemp("asyncapi-specs")
    npm = ["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(folder)]
    subprocess.run([*npm, "@asyncapi/specs@6"], check=True, timeout=300)
    path = folder / "node_modules" / "@asyncapi" / "specs" / "schemas" / "3.0.0-without-$id.json"
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def test_asyncapi_output_is_valid_asyncapi_3(tmp_path_factory) -> None:
    import jsonschema

    schema = asyncapi_schema(tmp_path_factory)
    validator = jsonschema.validators.validator_for(schema)(schema)
    for document in (app.asyncapi(), app.asyncapi(address="/ws", host="chat.example:443")):
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]
        assert errors == []


def test_asyncapi_marks_what_every_server_message_carries() -> None:
    document = app.asyncapi(address="/ws")
    assert document["channels"]["websocket"]["address"] == "/ws"
    assert document["servers"]["default"]["protocol"] == "ws"
    schemas = document["components"]["schemas"]
    for name in ("Joined", "MemberJoined", "ErrorReply", "Ack"):
        assert "type" in schemas[name]["required"], name
        assert "id" not in schemas[name]["required"], name  # left out when None
    summary = document["operations"]["receive_join"]["summary"]
    assert "Handle a" not in summary


def test_cli_describes_a_typed_app_behind_a_wsgi_mount() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "websock_actors", "asyncapi", "examples.flask_app:app"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert json.loads(out)["channels"]["websocket"]["address"] == "/ws"
