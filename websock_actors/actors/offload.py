"""Run what monkey-patching cannot make cooperative in real OS threads, and wait cooperatively.

C extensions that do their own blocking I/O (sqlite3 queries, some database drivers) and
CPU-heavy calls that release the GIL (hashing, compression, numpy) would stall every
greenlet of the hub. `offload` runs such a call in a bounded pool of OS threads (gevent's
thread pool) while the calling greenlet waits, so other connections keep being served.

    rows = offload(run_query, "select ...", timeout=5.0)

Pure-Python CPU work holds the GIL and gains nothing here; split it or run it elsewhere.
A call that times out raises `OffloadTimeout` in the caller; its thread cannot be killed
and runs to its end, still holding a pool slot.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import gevent
from gevent.threadpool import ThreadPool

from ..errors import OffloadTimeout

__all__ = ["OffloadTimeout", "configure_pool", "offload"]

T = TypeVar("T")

DEFAULT_POOL_SIZE = 8

_pools: dict[int, ThreadPool] = {}  # one pool per hub (hub id -> pool)
_pool_size = DEFAULT_POOL_SIZE


def configure_pool(size: int) -> None:
    """Set the number of OS threads per hub (default 8); applies to pools made afterwards."""
    global _pool_size
    if size < 1:
        raise ValueError("the pool needs at least one thread")
    _pool_size = size


def _pool() -> ThreadPool:
    hub = gevent.get_hub()
    pool = _pools.get(id(hub))
    if pool is None:
        pool = _pools[id(hub)] = ThreadPool(_pool_size, hub=hub)
    return pool


def offload(func: Callable[..., T], *args: Any, timeout: float | None = 30.0, **kwargs: Any) -> T:
    """Call `func(*args, **kwargs)` in a pool thread; the calling greenlet waits cooperatively."""
    result = _pool().spawn(func, *args, **kwargs)
    try:
        value = result.get(timeout=timeout)
    except gevent.Timeout:
        raise OffloadTimeout(f"{getattr(func, '__name__', func)} did not finish in {timeout}s") from None
    return value  # type: ignore[return-value]
