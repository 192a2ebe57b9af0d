"""Typed request-reply over a client connection: a fresh `id` per request, the reply that
carries it matched on the way in, an `error` reply raised as RequestError.

Only a text that may carry an "id" is parsed, and only while a request is pending or a late
reply is expected: pushes pass through untouched.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from ..errors import RequestError
from ..typed.messages import MessageId

__all__ = ["PendingRequests", "reply_or_raise"]

_MAX_LATE_IDS = 4096  # ids of timed-out requests whose late replies are dropped


class PendingRequests:
    """The requests of one connection that wait for their reply."""

    __slots__ = ("_ids", "_late", "_replies")

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._replies: dict[MessageId, dict[str, Any] | None] = {}  # None: no reply yet
        self._late: set[MessageId] = set()

    def next_id(self) -> int:
        return next(self._ids)

    def encode(self, message: Mapping[str, Any] | BaseModel) -> tuple[int, str]:
        """A fresh id and the request's JSON text carrying it; the request is now pending."""
        payload = message.model_dump(mode="json") if isinstance(message, BaseModel) else dict(message)
        if "type" not in payload:
            raise ValueError("a request needs a 'type'")
        message_id = next(self._ids)
        payload["id"] = message_id
        self._replies[message_id] = None
        return message_id, json.dumps(payload, separators=(",", ":"), ensure_ascii=False)

    def answered(self, message_id: MessageId) -> bool:
        return self._replies.get(message_id) is not None

    def take(self, message_id: MessageId) -> dict[str, Any] | None:
        """The request is no longer pending: its reply, or None (a timeout, a killed waiter,
        a lost connection), in which case a late reply is dropped when it comes."""
        reply = self._replies.pop(message_id, None)
        if reply is None:
            if len(self._late) >= _MAX_LATE_IDS:
                self._late.clear()
            self._late.add(message_id)
        return reply

    def claim(self, text: str) -> bool:
        """True when `text` is the reply to a pending request (kept for it) or a late one
        (dropped); False for anything else, which is a push."""
        if not (self._replies or self._late) or ('"id"' not in text and "\\u" not in text):
            return False
        try:
            message = json.loads(text)
        except ValueError:
            return False
        if type(message) is not dict:
            return False
        message_id = message.get("id")
        if type(message_id) is not int and type(message_id) is not str:
            return False
        replies = self._replies
        if message_id in replies and replies[message_id] is None:
            replies[message_id] = message
            return True
        if message_id in self._late:
            self._late.discard(message_id)
            return True
        return False

    def reset(self) -> None:
        """A new transport: replies to the old one's requests will never come."""
        self._late.clear()


def reply_or_raise(message_id: MessageId, reply: dict[str, Any]) -> dict[str, Any]:
    """The reply itself, or RequestError for an `error` reply (the connection stays open)."""
    if reply.get("type") == "error":
        errors = reply.get("errors")
        raise RequestError(
            str(reply.get("code", "error")),
            str(reply.get("detail", "")),
            message_id,
            errors if isinstance(errors, list) else None,
            reply,
        )
    return reply
