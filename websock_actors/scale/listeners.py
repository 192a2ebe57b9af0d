"""The listening sockets of `--workers N`, opened by the master before it forks.

Where SO_REUSEPORT works, the master opens one listener per worker slot, in order, and keeps
them open for the whole run: worker i accepts on listener i, and so does whichever process
replaces it. A rolling restart (scale/rolling.py) therefore never closes a listener: the new
worker accepts on the very socket the old one leaves, and the connections queued in its
backlog meanwhile are taken by the new worker instead of being reset. The alternative, a
listener per process, drops that queue when the old process closes its socket, unless the
kernel migrates it (`net.ipv4.tcp_migrate_req`, off by default and Linux 5.14 on). The cost:
while a slot has no worker (one that died, before its restart), its share of new connections
waits in the queue rather than going to the other workers.

Where SO_REUSEPORT is missing or refused, the master binds one socket that every worker
accepts on.
"""

from __future__ import annotations

import socket

from gevent import monkey

__all__ = ["prepare_listener", "reuse_port_works", "slot_listeners"]

_socket_class: type[socket.socket] = monkey.get_original("socket", "socket")


def prepare_listener(host: str, port: int, backlog: int = 1024) -> socket.socket | None:
    """Before the fork: None when the workers can each have a listener of their own on
    `host:port` (SO_REUSEPORT: `slot_listeners`), else the one listening socket they share.

    Raises OSError when the address is taken (by anyone: even a process that also set
    SO_REUSEPORT would otherwise silently share the port with us) or not ours.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with _socket_class(family, socket.SOCK_STREAM) as probe:  # a plain socket: no hub
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
    if reuse_port_works(family):
        return None
    listener = _socket_class(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(backlog)
    except BaseException:
        listener.close()
        raise
    return listener


def reuse_port_works(family: int) -> bool:
    option = getattr(socket, "SO_REUSEPORT", None)
    if option is None:
        return False
    with _socket_class(family, socket.SOCK_STREAM) as probe:
        try:
            probe.setsockopt(socket.SOL_SOCKET, option, 1)
        except OSError:  # defined, but refused by this kernel (ENOPROTOOPT)
            return False
    return True


def slot_listeners(host: str, port: int, count: int, backlog: int = 1024) -> list[socket.socket]:
    """`count` listeners on `host:port` in one SO_REUSEPORT group, listening in order (the
    kernel numbers the group's sockets so: scale/steering.py counts on it). Raises OSError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listeners: list[socket.socket] = []
    try:
        for _ in range(count):
            listener = _socket_class(family, socket.SOCK_STREAM)
            listeners.append(listener)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            listener.bind((host, port))
            listener.listen(backlog)
    except BaseException:
        for listener in listeners:
            listener.close()
        raise
    return listeners
