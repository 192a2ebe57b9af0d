"""TypeScript types of a typed app's messages: an interface per model, the unions, the reply map.

    text = typescript_definitions(app.router, app.pushes, title=app.title, version=app.version)

Built from the models' JSON Schema, so the names are the models' own (`Join`, `Joined`), and
the two directions differ where the wire does:

- what a client sends (requests, pydantic's validation form): a field with a default is
  optional (`name?: T`), since the server fills it in;
- what the server sends (replies, pushes, `ack`, `error`; the serialization form): a field
  with a default is always present, so it is required; only `id` (and an error's
  `retry_after_ms`) is left out when None, so those are optional and never null. With
  resumption, a push may carry `seq`, `epoch` and `room` (optional: only room broadcasts).

A nested model used in both directions whose two forms differ becomes two types: `Item` (as
the server sends it) and `ItemInput` (as a client may send it). `type` is required in every
message: it is what routes it. `RequestReplies` maps each request's `type` to what answers
it (a handler that may return nothing is answered by `Ack`); an `ErrorReply` rejects instead.
"""

from __future__ import annotations

import json
import re
import typing
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, models_json_schema
from pydantic_core import core_schema

from .messages import Ack, ErrorReply
from .router import Router, model_tag
from .schema import sent_models

__all__ = ["typescript_definitions"]

_REF = "#/$defs/"
_IDENTIFIER = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")
# Names a model cannot take: the generated ones, `Record` (used below), and the predefined
# types (a shadowed global such as `Date` is harmless: the declarations do not use it).
_RESERVED = frozenset((
    "Request", "Reply", "Push", "ServerMessage", "RequestReplies", "PushTypes", "Record",
    "any", "unknown", "never", "object", "string", "number", "boolean", "bigint", "symbol",
    "undefined", "null", "void",
))  # fmt: skip
# Left out of a sent message when None (typed/messages.py, to_json): optional, never null.
_OMITTED_WHEN_NONE: dict[type[BaseModel], tuple[str, ...]] = {ErrorReply: ("id", "retry_after_ms")}
# With resumption, what a room broadcast carries beside its model's fields (typed/resume.py).
_NUMBERED: dict[str, dict[str, Any]] = {
    "seq": {"type": "integer", "description": "The broadcast's number in its room (+1 each)."},
    "epoch": {"type": "string", "description": "The room's history; another epoch: history was lost."},
    "room": {"type": "string", "description": "The room (added when the model has no `room`)."},
}


class _SentAsSent(GenerateJsonSchema):
    """In serialization mode a model field with a default is required: it is always sent."""

    def field_is_required(
        self,
        field: core_schema.ModelField | core_schema.DataclassField | core_schema.TypedDictField,
        total: bool,
    ) -> bool:
        if self.mode == "serialization" and field["type"] != "typed-dict-field":
            return field.get("serialization_exclude_if") is None
        return super().field_is_required(field, total)


def typescript_definitions(
    router: Router,
    pushes: Sequence[type[BaseModel]],
    *,
    title: str = "app",
    version: str = "",
    numbered: bool = False,
) -> str:
    """The TypeScript module (declarations only) of the app's messages. `numbered`: the app
    resumes sessions, so pushes may carry `seq`, `epoch` and `room`."""
    requests = [route.model for route in router.routes.values()]
    replies = _unique([*(r.reply for r in router.routes.values() if r.reply is not None), Ack])
    sent = sent_models(router, pushes)
    keys = [(m, "validation") for m in requests] + [(m, "serialization") for m in sent]
    refs, top = models_json_schema(keys, ref_template=_REF + "{model}", schema_generator=_SentAsSent)  # type: ignore[arg-type]
    defs: dict[str, Any] = top.get("$defs", {})
    names = _type_names(defs)

    def def_of(model: type[BaseModel], mode: str) -> str:
        return str(refs[(model, mode)]["$ref"]).removeprefix(_REF)  # type: ignore[index]

    for model in requests:
        _require(defs[def_of(model, "validation")], "type")
    for model in sent:
        schema = defs[def_of(model, "serialization")]
        _require(schema, "type")
        for field in _OMITTED_WHEN_NONE.get(model, ("id",)):
            _omitted_when_none(schema, field)
    if numbered:
        for model in pushes:
            if model_tag(model) != "session":
                properties = defs[def_of(model, "serialization")].setdefault("properties", {})
                for name, schema in _NUMBERED.items():
                    properties.setdefault(name, dict(schema))

    def name_of(model: type[BaseModel], mode: str) -> str:
        return names[def_of(model, mode)]

    request_names = [name_of(m, "validation") for m in requests]
    reply_names = [name_of(m, "serialization") for m in replies]
    push_names = [name_of(m, "serialization") for m in pushes]
    order = [def_of(m, "validation") for m in requests] + [def_of(m, "serialization") for m in sent]
    order = list(dict.fromkeys([*order, *sorted(defs)]))
    out = [
        f"// {title} {version}".rstrip() + ": the app's messages as TypeScript types.",
        "// Generated by `websock-actors typescript`; do not edit.",
        "",
    ]
    for def_name in order:
        out += [*_declaration(names[def_name], defs[def_name], names), ""]
    out += [
        "/** Every message a client may send; `type` picks its model. */",
        *_alias("Request", request_names),
        "",
        "/** A reply to a request: it carries the request's `id`. */",
        *_alias("Reply", reply_names),
        "",
        "/** What the server sends unasked. */",
        *_alias("Push", push_names),
        "",
        "/** Everything the server sends: replies, pushes and errors. */",
        *_alias("ServerMessage", [name_of(m, "serialization") for m in sent]),
        "",
        "/** What answers each request `type` (an `ErrorReply` rejects the request instead). */",
        "export interface RequestReplies {",
    ]
    ack = name_of(Ack, "serialization")
    for route in router.routes.values():
        answer = [ack] if route.reply is None else [name_of(route.reply, "serialization")]
        if route.reply is not None and _may_return_none(route.handler):
            answer.append(ack)
        out.append(f"  {_property_name(route.tag)}: {_union(answer)};")
    out += ["}", "", "/** The push of each push `type`. */", "export interface PushTypes {"]
    for model in pushes:
        out.append(f"  {_property_name(model_tag(model))}: {name_of(model, 'serialization')};")
    out += ["}", ""]
    return "\n".join(out).replace(" {\n}", " {}")  # an empty interface on one line


def _unique(models: Iterable[type[BaseModel]]) -> list[type[BaseModel]]:
    return list(dict.fromkeys(models))


def _may_return_none(handler: Any) -> bool:
    """Whether the handler's return hint admits None (`Model | None`)."""
    hint = typing.get_type_hints(handler).get("return")
    return type(None) in typing.get_args(hint)


def _require(schema: dict[str, Any], field: str) -> None:
    required: list[str] = schema.setdefault("required", [])
    if field in schema.get("properties", {}) and field not in required:
        required.insert(0, field)


def _omitted_when_none(schema: dict[str, Any], field: str) -> None:
    """The field is optional and, when present, not null."""
    prop = schema.get("properties", {}).get(field)
    if prop is None:
        return
    if field in schema.get("required", []):
        schema["required"].remove(field)
    for key in ("anyOf", "oneOf"):
        if key in prop:
            prop[key] = [member for member in prop[key] if member.get("type") != "null"]
    prop.pop("default", None)


def _type_names(defs: dict[str, Any]) -> dict[str, str]:
    """Each definition's TypeScript name: the model's, made an identifier; of a model split in
    two forms, the sent one keeps the name and the received one gets `Input`."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    for def_name in sorted(defs, key=lambda name: (name.endswith("-Input"), name)):
        base = def_name.removesuffix("-Output")
        if base.endswith("-Input"):
            base = base.removesuffix("-Input") + "Input"
        name = re.sub(r"[^A-Za-z0-9_$]", "_", base) or "_"
        if name[0].isdigit() or name in _RESERVED:
            name = f"_{name}" if name[0].isdigit() else f"{name}_"
        candidate, n = name, 2
        while candidate in taken:
            candidate, n = f"{name}_{n}", n + 1
        names[def_name] = candidate
        taken.add(candidate)
    return names


def _declaration(name: str, schema: dict[str, Any], names: dict[str, str]) -> list[str]:
    lines = _doc(schema.get("description"), "")
    if schema.get("type") == "object" and "properties" in schema:
        lines.append(f"export interface {name} {{")
        required = set(schema.get("required", []))
        for field, prop in schema["properties"].items():
            lines += _doc(_field_doc(prop, field in required), "  ")
            optional = "" if field in required else "?"
            lines.append(f"  {_property_name(field)}{optional}: {_type(prop, names)};")
        extra = schema.get("additionalProperties")
        if extra not in (None, False):
            lines.append(f"  [key: string]: {'unknown' if extra is True else _type(extra, names)};")
        lines.append("}")
    else:
        lines.append(f"export type {name} = {_type(schema, names)};")
    return lines


# The JSON Schema constraints a field's comment repeats (as JSDoc tags), for whoever writes one.
_CONSTRAINTS = (
    "minLength", "maxLength", "pattern", "format", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", "multipleOf", "minItems", "maxItems", "minProperties", "maxProperties",
)  # fmt: skip


def _field_doc(prop: dict[str, Any], required: bool) -> str:
    """The field's description, its constraints, and its default when it may be left out."""
    shown = [key for key in _CONSTRAINTS if key in prop]
    if "prefixItems" in prop:  # a tuple's length is in its type
        shown = [key for key in shown if key not in ("minItems", "maxItems")]
    tags = [f"@{key} {json.dumps(prop[key])}" for key in shown]
    if not required and prop.get("default") is not None and len(json.dumps(prop["default"])) <= 60:
        tags.append(f"@default {json.dumps(prop['default'])}")
    lines = [str(prop.get("description") or "").strip(), " ".join(tags)]
    return "\n".join(line for line in lines if line)


def _doc(text: object, indent: str) -> list[str]:
    if not isinstance(text, str) or not text.strip():
        return []
    body = [line.rstrip().replace("*/", "*\\/") for line in text.strip().splitlines()]
    if len(body) == 1:
        return [f"{indent}/** {body[0]} */"]
    return [f"{indent}/**", *(f"{indent} * {line}".rstrip() for line in body), f"{indent} */"]


def _property_name(name: str) -> str:
    return name if _IDENTIFIER.match(name) else json.dumps(name)


def _alias(name: str, members: list[str]) -> list[str]:
    """`export type Name = A | B;`, one member a line when that is long."""
    line = f"export type {name} = {_union(members)};"
    if len(line) <= 100:
        return [line]
    lines = [f"export type {name} =", *(f"  | {member}" for member in dict.fromkeys(members))]
    lines[-1] += ";"
    return lines


def _union(members: Iterable[str]) -> str:
    """`A | B`, each member once; members that are unions themselves are flattened."""
    flat: list[str] = []
    for member in members:
        flat += [member] if "{" in member or "(" in member else member.split(" | ")
    unique = list(dict.fromkeys(flat))
    if not unique:
        return "never"
    return " | ".join(unique)


def _type(schema: Any, names: dict[str, str]) -> str:
    """The TypeScript type of one JSON Schema (as pydantic writes them)."""
    if schema is True or not isinstance(schema, dict):
        return "unknown" if schema is not False else "never"
    if "$ref" in schema:
        return names.get(str(schema["$ref"]).removeprefix(_REF), "unknown")
    if "const" in schema:
        return json.dumps(schema["const"])
    if "enum" in schema:
        return _union(json.dumps(value) for value in schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return _union(_type(member, names) for member in schema[key])
    if "allOf" in schema:
        return " & ".join(_member(member, names) for member in schema["allOf"]) or "unknown"
    kind = schema.get("type")
    if isinstance(kind, list):
        return _union(_type({**schema, "type": one}, names) for one in kind)
    if kind in ("integer", "number"):
        return "number"
    if kind in ("string", "boolean", "null"):
        return str(kind)
    if kind == "array":
        return _array(schema, names)
    if kind == "object":
        return _object(schema, names)
    return "unknown"


def _member(schema: Any, names: dict[str, str]) -> str:
    """A type inside a union, an intersection or an array: parenthesised when compound."""
    text = _type(schema, names)
    return f"({text})" if (" | " in text or " & " in text) and not text.startswith("{") else text


def _array(schema: dict[str, Any], names: dict[str, str]) -> str:
    if "prefixItems" in schema:  # a tuple
        members = [_type(item, names) for item in schema["prefixItems"]]
        rest = schema.get("items")
        if rest not in (None, False):
            members.append(f"...{_member(rest, names)}[]")
        return f"[{', '.join(members)}]"
    items = schema.get("items")
    return f"{_member(items, names)}[]" if items is not None else "unknown[]"


def _object(schema: dict[str, Any], names: dict[str, str]) -> str:
    properties: dict[str, Any] = schema.get("properties", {})
    extra = schema.get("additionalProperties", True if not properties else None)
    if not properties:
        if extra is False:
            return "Record<string, never>"
        return f"Record<string, {_type(extra, names)}>"
    required = set(schema.get("required", []))
    fields = [
        f"{_property_name(key)}{'' if key in required else '?'}: {_type(value, names)};"
        for key, value in properties.items()
    ]
    if extra not in (None, False):
        fields.append("[key: string]: unknown;")
    return "{ " + " ".join(fields) + " }"
