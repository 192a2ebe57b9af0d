"""Legacy synchronous code in typed handlers, served cooperatively.

    websock-actors run examples.legacy_sync:app --port 8000

The command line patches the standard library first (gevent.monkey.patch_all), so the
blocking calls below (`time.sleep`, `urllib.request.urlopen`) wait in their own
connection's greenlet while every other connection keeps being served. sqlite3 does its
I/O in C, where patching cannot reach, so `report` runs its query in the offload pool.

  {"type": "nap", "id", "seconds": 0-10}  -> {"type": "napped", "id"}
  {"type": "fetch", "id", "url"}          -> {"type": "fetched", "id", "status", "bytes"}
                                             or an error with code "fetch_failed"
  {"type": "report", "id"}                -> {"type": "report", "id", "rows"}
  {"type": "ping", "id"}                  -> {"type": "pong", "id"}
"""

from __future__ import annotations

import sqlite3
import time
import urllib.error
import urllib.request
from typing import Literal

from pydantic import Field

from websock_actors import App, Context, Message, MessageError, offload

app = App("legacy sync", "1.0.0")


class Nap(Message):
    type: Literal["nap"]
    seconds: float = Field(ge=0, le=10)


class Napped(Message):
    type: Literal["napped"] = "napped"


class Fetch(Message):
    type: Literal["fetch"]
    url: str = Field(min_length=1, max_length=2000)


class Fetched(Message):
    type: Literal["fetched"] = "fetched"
    status: int
    bytes: int


class ReportRequest(Message):
    type: Literal["report"]


class Report(Message):
    type: Literal["report"] = "report"
    rows: int


class Ping(Message):
    type: Literal["ping"]


class Pong(Message):
    type: Literal["pong"] = "pong"


@app.handler
def nap(msg: Nap, ctx: Context) -> Napped:
    time.sleep(msg.seconds)  # patched: this greenlet waits, the others run
    return Napped()


@app.handler
def fetch(msg: Fetch, ctx: Context) -> Fetched:
    if not msg.url.startswith(("http://", "https://")):
        raise MessageError("fetch_failed", "only http:// and https:// URLs")
    try:
        with urllib.request.urlopen(msg.url, timeout=10) as response:
            return Fetched(status=response.status, bytes=len(response.read()))
    except urllib.error.HTTPError as exc:
        return Fetched(status=exc.code, bytes=len(exc.read()))
    except (OSError, ValueError) as exc:
        raise MessageError("fetch_failed", str(exc)[:200]) from None


def _count_rows() -> int:
    """A query in C code: run in a pool thread, not in the hub's thread."""
    with sqlite3.connect(":memory:") as db:
        db.execute("create table t (n integer)")
        db.executemany("insert into t values (?)", ((i,) for i in range(20_000)))
        (rows,) = db.execute("select count(*) from t where n % 3 = 0").fetchone()
    return int(rows)


@app.handler
def report(msg: ReportRequest, ctx: Context) -> Report:
    return Report(rows=offload(_count_rows, timeout=10.0))


@app.handler
def ping(msg: Ping, ctx: Context) -> Pong:
    return Pong()
