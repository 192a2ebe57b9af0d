"""permessage-deflate (RFC 7692), sans I/O: negotiation and the per-connection codec.

Negotiation, server side: `server_negotiate` reads the client's offers and returns the
parameters of the first one it accepts (rendered into the answer with
`DeflateParameters.header`; None declines) and why it declined the others. Client side:
`client_offer` builds the offer and `client_accept` checks the server's answer to it.

The codec, `PerMessageDeflate`, compresses a message payload (the result is sent with RSV1
set on its first frame) and decompresses a received one fragment by fragment, the output
bounded by the caller's limit (the maximum message size), so that a small "zip bomb" costs
a close with 1009, not memory.

Memory is what compression costs per connection, so by default neither side keeps context
between messages (`context_takeover=False`): outgoing messages are then compressed by a
`MessageCompressor` that all connections of a server share (a full flush after each message
makes every message independent of the ones before it), and a received message gets a
fresh decompressor that is dropped at its end. An idle connection holds no zlib state.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import CloseCode, LocalHandshakeRefusal, ProtocolError, RemoteHandshakeRefusal
from .http import Extension, parse_extensions

__all__ = [
    "EXTENSION_NAME",
    "CompressorPool",
    "DeflateOptions",
    "DeflateParameters",
    "MessageCompressor",
    "PerMessageDeflate",
    "client_accept",
    "client_offer",
    "parse_parameters",
    "server_negotiate",
]

EXTENSION_NAME = "permessage-deflate"
# What a sync flush ends with; the sender strips it, the receiver puts it back (RFC 7692 7.2).
_TAIL = b"\x00\x00\xff\xff"
_WINDOW_VALUE = re.compile(r"[1-9][0-9]?")  # a decimal integer without leading zeroes


def _zlib_window(bits: int) -> int:
    """zlib refuses an 8-bit window for raw deflate; a 9-bit one never reaches further back
    than 2**9 - 262 = 250 bytes (zlib keeps MIN_LOOKAHEAD = 262 bytes of the window free), so
    its output is valid for a peer that asked for 8."""
    return -max(bits, 9)


@dataclass(frozen=True, slots=True)
class DeflateOptions:
    """One endpoint's permessage-deflate policy.

    - `threshold`: payloads shorter than this many bytes are sent uncompressed.
    - `level`: the zlib compression level (0-9, -1 for zlib's default).
    - `window_bits`: the LZ77 window (8-15) of our compressor, announced to the peer as
      `server_max_window_bits` (a server) or `client_max_window_bits` (a client), and the
      window we ask the peer to use when it supports that.
    - `mem_level`: zlib's memLevel (1-9) for our compressors.
    - `context_takeover`: keep compression history between messages (better ratios on
      streams of similar messages) at the price of a compressor and a decompressor per
      connection (about 2**(window_bits+2) + 2**(mem_level+9) bytes for the compressor and
      7 KiB + 2**window_bits for the decompressor, once used). Off by default: no zlib state
      outlives a message, and a broadcast is compressed once for all its receivers.
    """

    threshold: int = 256
    level: int = 6
    window_bits: int = 12
    mem_level: int = 5
    context_takeover: bool = False

    def __post_init__(self) -> None:
        if self.threshold < 0:
            raise ValueError("compression threshold must be >= 0")
        if not -1 <= self.level <= 9:
            raise ValueError("compression level must be between -1 and 9")
        if not 8 <= self.window_bits <= 15:
            raise ValueError("window bits must be between 8 and 15")
        if not 1 <= self.mem_level <= 9:
            raise ValueError("memory level must be between 1 and 9")


@dataclass(frozen=True, slots=True)
class DeflateParameters:
    """The parameters of one permessage-deflate offer or response (RFC 7692 section 7.1).

    A window size of None means the parameter is absent. In an offer, a bare
    `client_max_window_bits` reads as 15: it means the same ("I accept a limit up to 15").
    """

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int | None = None
    client_max_window_bits: int | None = None

    def header(self) -> str:
        """The extension as it goes into a Sec-WebSocket-Extensions header."""
        parts = [EXTENSION_NAME]
        if self.server_no_context_takeover:
            parts.append("server_no_context_takeover")
        if self.client_no_context_takeover:
            parts.append("client_no_context_takeover")
        if self.server_max_window_bits is not None:
            parts.append(f"server_max_window_bits={self.server_max_window_bits}")
        if self.client_max_window_bits is not None:
            parts.append(f"client_max_window_bits={self.client_max_window_bits}")
        return "; ".join(parts)


def _window_bits(name: str, value: str) -> int:
    if not _WINDOW_VALUE.fullmatch(value) or not 8 <= int(value) <= 15:
        raise LocalHandshakeRefusal(400, f"{name}={value!r}: the value must be an integer from 8 to 15")
    return int(value)


def parse_parameters(params: Sequence[tuple[str, str | None]], *, response: bool) -> DeflateParameters:
    """Read a permessage-deflate offer's (or, `response=True`, an answer's) parameters.

    Raises LocalHandshakeRefusal(400) for what RFC 7692 section 7 says must make a server decline
    the offer (or a client fail the connection): an unknown or repeated parameter, or an
    invalid value.
    """
    flags = {"server_no_context_takeover": False, "client_no_context_takeover": False}
    bits: dict[str, int | None] = {"server_max_window_bits": None, "client_max_window_bits": None}
    seen: set[str] = set()
    for name, value in params:
        if name in seen:
            raise LocalHandshakeRefusal(400, f"repeated parameter {name}")
        seen.add(name)
        if name in flags:
            if value is not None:
                raise LocalHandshakeRefusal(400, f"{name} takes no value")
            flags[name] = True
        elif name in bits:
            if value is not None:
                bits[name] = _window_bits(name, value)
            elif name == "client_max_window_bits" and not response:
                bits[name] = 15
            else:
                raise LocalHandshakeRefusal(400, f"{name} needs a value")
        else:
            raise LocalHandshakeRefusal(400, f"unknown parameter {name!r}")
    return DeflateParameters(
        flags["server_no_context_takeover"],
        flags["client_no_context_takeover"],
        bits["server_max_window_bits"],
        bits["client_max_window_bits"],
    )


def _deflate_offers(header: str | None) -> list[Extension]:
    if not header:
        return []
    try:
        extensions = parse_extensions(header)
    except LocalHandshakeRefusal as exc:
        raise LocalHandshakeRefusal(400, f"malformed Sec-WebSocket-Extensions header: {exc.reason}") from None
    return [ext for ext in extensions if ext[0] == EXTENSION_NAME]


# -- negotiation: server side -------------------------------------------------------------------


def _answer(offer: DeflateParameters, options: DeflateOptions) -> DeflateParameters:
    """Our response to an acceptable offer: what the client asked for, and what we want."""
    window = options.window_bits
    asked = offer.server_max_window_bits
    server_bits = window if asked is None else min(window, asked)
    return DeflateParameters(
        # We may always drop our own context; the client may ask us to.
        server_no_context_takeover=offer.server_no_context_takeover or not options.context_takeover,
        # We may always ask the client to drop its context.
        client_no_context_takeover=offer.client_no_context_takeover or not options.context_takeover,
        # Required when the client asked for a limit; otherwise said when below the default 15.
        server_max_window_bits=(
            server_bits if asked is not None or server_bits < 15 else None
        ),
        # Only allowed when offered; at most the offered value.
        client_max_window_bits=(
            None if offer.client_max_window_bits is None else min(window, offer.client_max_window_bits)
        ),
    )


def server_negotiate(
    header: str | None, options: DeflateOptions
) -> tuple[DeflateParameters | None, list[str]]:
    """Answer a request's Sec-WebSocket-Extensions header: (accepted parameters, declines).

    The first permessage-deflate offer whose parameters are valid is accepted; the answer's
    parameters are returned (render them with `header()`). Offers with an unknown, repeated
    or invalid parameter are declined, as RFC 7692 section 7 requires; the second item says
    why, for the log. Every configuration a valid offer can ask for is supported. A header
    that does not parse at all (RFC 6455 section 9.1) raises LocalHandshakeRefusal(400).
    """
    declined: list[str] = []
    for _, params in _deflate_offers(header):
        try:
            offer = parse_parameters(params, response=False)
        except LocalHandshakeRefusal as exc:
            declined.append(exc.reason)
            continue
        return _answer(offer, options), declined
    return None, declined


# -- negotiation: client side -------------------------------------------------------------------


def client_offer(options: DeflateOptions) -> str:
    """The offer a client sends for `options`, for the Sec-WebSocket-Extensions header."""
    window = options.window_bits
    return DeflateParameters(
        server_no_context_takeover=not options.context_takeover,
        client_no_context_takeover=not options.context_takeover,
        server_max_window_bits=window if window < 15 else None,
        client_max_window_bits=window,
    ).header()


def client_accept(header: str | None, options: DeflateOptions) -> DeflateParameters | None:
    """Check the server's answer to `client_offer(options)`; None when it declined.

    Raises RemoteHandshakeRefusal (status 101) for an answer the client must fail the connection for
    (RFC 7692 section 7.1): another extension, two answers, an invalid parameter, or a
    parameter that contradicts the offer.
    """
    if not header:
        return None

    def fail(reason: str) -> RemoteHandshakeRefusal:
        return RemoteHandshakeRefusal(101, f"invalid permessage-deflate answer: {reason}")

    try:
        extensions = parse_extensions(header)
    except LocalHandshakeRefusal as exc:
        raise fail(exc.reason) from None
    if not extensions:
        return None
    if len(extensions) > 1 or extensions[0][0] != EXTENSION_NAME:
        raise fail(f"the server accepted extensions that were not offered: {header!r}")
    try:
        answer = parse_parameters(extensions[0][1], response=True)
    except LocalHandshakeRefusal as exc:
        raise fail(exc.reason) from None
    offered = options.window_bits
    if not options.context_takeover and not answer.server_no_context_takeover:
        raise fail("server_no_context_takeover was requested but not confirmed")
    if offered < 15:
        if answer.server_max_window_bits is None:
            raise fail("server_max_window_bits was requested but not confirmed")
        if answer.server_max_window_bits > offered:
            raise fail(f"server_max_window_bits={answer.server_max_window_bits} is over {offered}")
    if answer.client_max_window_bits is not None and answer.client_max_window_bits > offered:
        raise fail(f"client_max_window_bits={answer.client_max_window_bits} is over {offered}")
    return answer


# -- the codec -----------------------------------------------------------------------------------


def _too_big(limit: int) -> ProtocolError:
    return ProtocolError(f"message over {limit} more bytes once decompressed", CloseCode.MESSAGE_TOO_BIG)


class MessageCompressor:
    """Compresses messages one at a time, each independent of those before it.

    One zlib stream serves every message: a full flush (Z_FULL_FLUSH) ends each message on
    a byte boundary and forgets the history, which is what `*_no_context_takeover` asks
    for. So one instance can serve all the connections of a server (any that run in one
    thread: a call never yields), and a broadcast is compressed once for all of them.
    """

    __slots__ = ("_zlib", "level", "mem_level", "threshold", "window_bits")

    def __init__(self, options: DeflateOptions, window_bits: int) -> None:
        self.threshold = options.threshold
        self.level = options.level
        self.mem_level = options.mem_level
        self.window_bits = window_bits
        self._zlib: zlib._Compress | None = None

    def compress(self, payload: bytes | memoryview) -> bytes | None:
        """The compressed payload, without the trailing 00 00 ff ff (RFC 7692 7.2.1).

        None when that is not smaller than the payload (incompressible data): send the
        message uncompressed then. Nothing later depends on it, as no context is kept.
        """
        z = self._zlib
        if z is None:
            z = self._zlib = zlib.compressobj(
                self.level, zlib.DEFLATED, _zlib_window(self.window_bits), self.mem_level
            )
        data = z.compress(payload) + z.flush(zlib.Z_FULL_FLUSH)
        return data[:-4] if len(data) - 4 < len(payload) else None


class CompressorPool:
    """The `MessageCompressor`s of one server, one per window size in use, made on first use."""

    __slots__ = ("_compressors", "options")

    def __init__(self, options: DeflateOptions) -> None:
        self.options = options
        self._compressors: dict[int, MessageCompressor] = {}

    def get(self, window_bits: int) -> MessageCompressor:
        compressor = self._compressors.get(window_bits)
        if compressor is None:
            compressor = self._compressors[window_bits] = MessageCompressor(self.options, window_bits)
        return compressor


class PerMessageDeflate:
    """One connection's permessage-deflate codec, for the `server` or the client side.

    `params` are the negotiated parameters (the server's answer). Without context takeover
    on our side, outgoing messages go through `shared`, a `MessageCompressor` (from the
    server's `CompressorPool`; a private one when none is given).
    """

    __slots__ = (
        "_compressor",
        "_decompressor",
        "_level",
        "_local_bits",
        "_mem_level",
        "_remote_bits",
        "local_context_takeover",
        "params",
        "remote_context_takeover",
        "shared",
        "threshold",
    )

    def __init__(
        self,
        params: DeflateParameters,
        options: DeflateOptions,
        *,
        server: bool,
        pool: CompressorPool | None = None,
    ) -> None:
        self.params = params
        if server:
            local_no_takeover, local_bits = params.server_no_context_takeover, params.server_max_window_bits
            remote_no_takeover, remote_bits = params.client_no_context_takeover, params.client_max_window_bits
        else:
            local_no_takeover, local_bits = params.client_no_context_takeover, params.client_max_window_bits
            remote_no_takeover, remote_bits = params.server_no_context_takeover, params.server_max_window_bits
        self.threshold = options.threshold
        self._level = options.level
        self._mem_level = options.mem_level
        # We may always use less than was agreed: a smaller window, or no context takeover.
        self._local_bits = min(options.window_bits, local_bits or 15)
        self.local_context_takeover = options.context_takeover and not local_no_takeover
        self._remote_bits = remote_bits or 15
        self.remote_context_takeover = not remote_no_takeover
        self._compressor: zlib._Compress | None = None
        self._decompressor: zlib._Decompress | None = None
        self.shared: MessageCompressor | None = None
        if not self.local_context_takeover:
            if pool is None:
                pool = CompressorPool(options)
            self.shared = pool.get(self._local_bits)

    # -- sending ---------------------------------------------------------------------------

    def compress(self, payload: bytes) -> bytes | None:
        """Compress one whole message payload (to be sent with RSV1 on its first frame).

        None when, without context takeover, compression does not make it smaller: send
        it uncompressed. (With context takeover the peer must see every compressed byte.)
        """
        shared = self.shared
        if shared is not None:
            return shared.compress(payload)
        z = self._compressor
        if z is None:  # made at the first message that is compressed
            z = self._compressor = zlib.compressobj(
                self._level, zlib.DEFLATED, _zlib_window(self._local_bits), self._mem_level
            )
        return (z.compress(payload) + z.flush(zlib.Z_SYNC_FLUSH))[:-4]

    # -- receiving -------------------------------------------------------------------------

    def decompress(self, data: bytes, *, final: bool, limit: int | None) -> bytes:
        """Decompress the payload of one frame of a compressed message.

        `final` marks the message's last frame. At most `limit` bytes may come out (None: no
        limit); one more raises ProtocolError(1009) before anything else is inflated.
        Invalid compressed data raises ProtocolError(1002).
        """
        d = self._decompressor
        if d is None:
            d = self._decompressor = zlib.decompressobj(-self._remote_bits)
        try:
            out = d.decompress(data, 0 if limit is None else limit + 1)
            if limit is not None and len(out) > limit:
                raise _too_big(limit)
            if final and not d.eof:
                rest = None if limit is None else limit - len(out)
                more = d.decompress(_TAIL, 0 if rest is None else rest + 1)
                if rest is not None and len(more) > rest:
                    raise _too_big(rest + len(out))
                out += more
        except zlib.error as exc:
            self._decompressor = None
            raise ProtocolError(f"invalid compressed data: {exc}") from None
        except ProtocolError:
            self._decompressor = None
            raise
        if d.eof and d.unused_data:
            self._decompressor = None
            raise ProtocolError("data after the final deflate block")
        if final and (d.eof or not self.remote_context_takeover):
            self._decompressor = None  # no history to keep: free the window now
        return out
