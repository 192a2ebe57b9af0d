"""One client address, one worker: a classic-BPF program on the SO_REUSEPORT group.

Under `--workers N` the per-IP caps are counted in each worker. Spread by the kernel's hash
of the 4-tuple, one address's connections land on every worker, and a cap of 5 admits 5 per
worker. Steered by its source address, each address meets one worker, whose counts are then
the address's own: the caps hold across workers without any counting between processes.

The program (attached with SO_ATTACH_REUSEPORT_CBPF, Linux) reads the source address from
the IP header (the low word of an IPv6 one), mixes it, and returns `word % N`: the index of
a socket in the reuseport group. The kernel numbers the group's sockets in the order they
started listening and renumbers them when one closes, so the master opens the N listeners
in order before forking and keeps them open for the whole run (scale/listeners.py): worker i
serves listener i, and a restarted or replacing worker i inherits the same socket, hence the
same addresses. Where the program cannot be attached, `steered_listeners` says so in one log
line and returns None: the listeners are then unsteered, as without per-IP caps.
"""

from __future__ import annotations

import ctypes
import ipaddress
import logging
import socket

__all__ = ["SO_ATTACH_REUSEPORT_CBPF", "steered_listeners", "steering_program", "worker_of"]

log = logging.getLogger("websock_actors")

SO_ATTACH_REUSEPORT_CBPF = 51  # <asm-generic/socket.h>; socket does not export it
_SKF_NET_OFF = -0x100000  # offsets from the network (IP) header, not the TCP payload
_MIX = 0x9E3779B1  # a multiplicative hash: addresses differing in high bits spread too

# struct sock_filter codes (<linux/filter.h>)
_LD_W_ABS, _LD_B_ABS = 0x00 | 0x00 | 0x20, 0x00 | 0x10 | 0x20
_ALU_RSH_K, _ALU_MUL_K, _ALU_MOD_K = 0x04 | 0x70, 0x04 | 0x20, 0x04 | 0x90
_JMP_JEQ_K, _JMP_JA = 0x05 | 0x10, 0x05 | 0x00
_RET_A = 0x06 | 0x10

Instruction = tuple[int, int, int, int]  # code, jump if true, jump if false, k


def _net(offset: int) -> int:
    return (_SKF_NET_OFF + offset) & 0xFFFFFFFF


def steering_program(count: int) -> list[Instruction]:
    """The program that sends a connection to socket `mix(address word) % count`."""
    return [
        (_LD_B_ABS, 0, 0, _net(0)),  # the IP version, in the high nibble
        (_ALU_RSH_K, 0, 0, 4),
        (_JMP_JEQ_K, 0, 2, 6),
        (_LD_W_ABS, 0, 0, _net(20)),  # IPv6: the last word of the source address
        (_JMP_JA, 0, 0, 1),
        (_LD_W_ABS, 0, 0, _net(12)),  # IPv4: the source address
        (_ALU_MUL_K, 0, 0, _MIX),
        (_ALU_RSH_K, 0, 0, 16),
        (_ALU_MOD_K, 0, 0, count),
        (_RET_A, 0, 0, 0),
    ]


def worker_of(ip: str, count: int) -> int:
    """The worker (from 1) the program steers `ip` to: the same arithmetic, in Python."""
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # on a dual-stack socket, IPv4 arrives as IPv4
    word = int(address) & 0xFFFFFFFF
    return (((word * _MIX) & 0xFFFFFFFF) >> 16) % count + 1


class _Filter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class _Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_Filter))]


def attach(listener: socket.socket, count: int) -> None:
    """Attach the program to the reuseport group of `listener` (every socket of it listening
    already: a socket that joins later may bring a group of its own). Raises OSError."""
    code = steering_program(count)
    filters = (_Filter * len(code))(*(_Filter(*instruction) for instruction in code))
    program = _Program(len(code), ctypes.cast(filters, ctypes.POINTER(_Filter)))
    listener.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, bytes(program))


def steered_listeners(host: str, port: int, count: int, backlog: int = 1024) -> list[socket.socket] | None:
    """Before the fork: `count` listeners on `host:port`, one per worker in order, with the
    steering program; None (and one log line) where it cannot be attached."""
    from .listeners import slot_listeners

    listeners: list[socket.socket] = []
    try:
        listeners = slot_listeners(host, port, count, backlog)
        attach(listeners[0], count)
    except (OSError, AttributeError) as exc:  # not Linux, an old kernel, no SO_REUSEPORT
        for listener in listeners:
            listener.close()
        log.warning("cannot steer client addresses to workers (%s): the per-IP caps count per worker", exc)
        return None
    return listeners
