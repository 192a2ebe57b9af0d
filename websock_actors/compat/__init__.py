"""Compatibility: WebSock 1.0.4's callback API, and a WSGI application beside the WebSocket one.

    websock.py  WebSocketServer, Client, FrameType: WebSock's API as a drop-in
    wsgi.py     WSGIMount: plain HTTP to a WSGI app (Flask, Django), upgrades to the actors
"""

from ..errors import WebSocketInvalidDataFrame, WebSocketInvalidHandshake
from .websock import Client, FrameType, WebSocketServer
from .wsgi import WSGIMount

__all__ = [
    "Client",
    "FrameType",
    "WSGIMount",
    "WebSocketInvalidDataFrame",
    "WebSocketInvalidHandshake",
    "WebSocketServer",
]
