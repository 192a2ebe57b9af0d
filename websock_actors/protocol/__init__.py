"""The sans-I/O RFC 6455 core: frames, HTTP heads, the opening handshake, the connection
state machine, permessage-deflate.

No gevent, no sockets, no pydantic here: bytes in, events out, bytes to send. The server
and the client both drive it; this package imports nothing above `websock_actors.errors`.

    frames.py      a frame encoded, frames parsed from a byte stream (masking included)
    http.py        request and response heads parsed, answers rendered, header grammar
    handshake.py   ServerHandshake / ClientHandshake: the CONNECTING state of a connection
    connection.py  WebSocketConnection: the OPEN -> CLOSING -> CLOSED state machine
    deflate.py     permessage-deflate negotiation and codec (RFC 7692)
    redact.py      credentials masked for display: URL userinfo, token parameters, headers
"""

from .connection import (
    DEFAULT_MAX_FRAGMENTS,
    DEFAULT_MAX_MESSAGE_SIZE,
    BinaryMessage,
    CloseReceived,
    ConnectionLost,
    ConnectionState,
    Event,
    PingReceived,
    PongReceived,
    ProtocolFailure,
    Role,
    TextMessage,
    WebSocketConnection,
    close_payload,
    is_valid_close_code,
)
from .deflate import (
    CompressorPool,
    DeflateOptions,
    DeflateParameters,
    MessageCompressor,
    PerMessageDeflate,
    client_accept,
    client_offer,
    server_negotiate,
)
from .frames import Frame, FrameParser, Opcode, apply_mask, encode_frame
from .handshake import (
    ClientHandshake,
    HandshakePolicy,
    ServerHandshake,
    accept_key,
    build_request,
    build_response,
    generate_key,
    validate_request,
    validate_response,
)
from .http import (
    DEFAULT_MAX_HEADER_BYTES,
    Extension,
    Headers,
    Request,
    Response,
    error_response,
    header_tokens,
    parse_extensions,
    parse_request,
    parse_response,
    render_response,
)

__all__ = [
    "DEFAULT_MAX_FRAGMENTS",
    "DEFAULT_MAX_HEADER_BYTES",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "BinaryMessage",
    "ClientHandshake",
    "CloseReceived",
    "CompressorPool",
    "ConnectionLost",
    "ConnectionState",
    "DeflateOptions",
    "DeflateParameters",
    "Event",
    "Extension",
    "Frame",
    "FrameParser",
    "HandshakePolicy",
    "Headers",
    "MessageCompressor",
    "Opcode",
    "PerMessageDeflate",
    "PingReceived",
    "PongReceived",
    "ProtocolFailure",
    "Request",
    "Response",
    "Role",
    "ServerHandshake",
    "TextMessage",
    "WebSocketConnection",
    "accept_key",
    "apply_mask",
    "build_request",
    "build_response",
    "client_accept",
    "client_offer",
    "close_payload",
    "encode_frame",
    "error_response",
    "generate_key",
    "header_tokens",
    "is_valid_close_code",
    "parse_extensions",
    "parse_request",
    "parse_response",
    "render_response",
    "server_negotiate",
    "validate_request",
    "validate_response",
]
