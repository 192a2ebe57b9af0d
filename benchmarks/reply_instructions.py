"""User-space instructions the server executes per reply, counted by valgrind: a figure that
the host's load does not move, for comparing two builds' code between the read and the write.

    .venv/bin/python benchmarks/reply_instructions.py [--tree DIR] [--app benchmarks.typed_echo_app:app]
        [--conns 100] [--rounds 20,220] [--server "COMMAND with {port}"]

It serves the app under `valgrind --tool=cachegrind --cache-sim=no` twice, each time answering
`--conns` connections that send one typed echo request each and wait for its answer, in
lockstep rounds (so the server sees about `--conns` ready connections per loop turn, as at
C=100 W=1 in the side-by-side bench). The difference of the two runs' instruction counts,
over the difference of their replies, leaves out start-up and shutdown. `--server` counts
another server instead (its command must stop on SIGTERM; `{port}` is replaced). The kernel's
share (the read and the write) is not counted. Needs valgrind (`apt-get install valgrind`);
each run takes some 10-20 seconds.
"""

from __future__ import annotations

import argparse
import os
import re
import selectors
import shlex
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script too, the harness is imported as benchmarks.harness

from benchmarks.harness.ports import free_port, wait_for_port  # noqa: E402
from benchmarks.harness.processes import stop_process  # noqa: E402
from benchmarks.harness.raw_websocket import read_handshake, request_head, text_frame  # noqa: E402

REQUEST = '{"type":"echo","id":12345,"text":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}'


def lockstep(port: int, conns: int, rounds: int) -> int:
    """`rounds` rounds of one request on each of `conns` connections; the replies counted."""
    socks = []
    for _ in range(conns):
        sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(request_head(port))
        if read_handshake(sock):
            raise RuntimeError("bytes after the handshake's answer")
        socks.append(sock)
    frame = text_frame(REQUEST)
    replies = 0
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            selector.register(sock, selectors.EVENT_READ)
        for _ in range(rounds):
            for sock in socks:
                sock.sendall(frame)
            pending = conns
            while pending:
                events = selector.select(timeout=60)
                if not events:
                    raise RuntimeError("no reply within 60 s")
                for key, _ in events:
                    data = key.fileobj.recv(4096)  # type: ignore[union-attr]
                    if data[:1] != b"\x81":
                        raise RuntimeError(f"not one text frame: {data[:40]!r}")
                    pending -= 1
                    replies += 1
    for sock in socks:
        sock.close()
    return replies


def counted(command: list[str], env: dict[str, str], cwd: str, conns: int, rounds: int) -> tuple[int, int]:
    """(instructions, replies) of one run of the server under valgrind, started in `cwd` (the
    tree served: `python -m` looks there first)."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "valgrind.log"
        valgrind = [
            "valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
            f"--log-file={log}",
        ]  # fmt: skip
        argv = [*valgrind, *(part.replace("{port}", str(port)) for part in command)]
        quiet = subprocess.DEVNULL
        server = subprocess.Popen(argv, cwd=cwd, env=env, stdout=quiet, stderr=quiet)
        try:
            why = wait_for_port(port, 300, process=server)
            if why is not None:
                raise RuntimeError(f"the server did not start: {why}")
            replies = lockstep(port, conns, rounds)
        finally:
            stop_process(server, 120)  # valgrind writes its count as the server exits
        found = re.search(r"I\s+refs:\s+([\d,]+)", log.read_text())
        if found is None:
            raise RuntimeError("valgrind printed no instruction count")
        return int(found.group(1).replace(",", "")), replies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", default=str(ROOT), help="the checkout whose websock_actors is served")
    parser.add_argument("--app", default="benchmarks.typed_echo_app:app")
    parser.add_argument("--conns", type=int, default=100)
    parser.add_argument("--rounds", default="20,220", help="the two runs' rounds")
    parser.add_argument("--server", help="another server's command, with {port}")
    args = parser.parse_args()
    if subprocess.run(["valgrind", "--version"], capture_output=True).returncode != 0:
        print("valgrind is needed: apt-get install valgrind", file=sys.stderr)
        return 2
    if args.server:
        command = shlex.split(args.server)
    else:
        command = [
            sys.executable, "-m", "websock_actors", "run", args.app, "--port", "{port}", "--no-patch",
            "--ping-interval", "0", "--log-level", "WARNING",
        ]  # fmt: skip
    tree = str(Path(args.tree).resolve())
    # A fixed hash seed: dict and set layouts, and so the counts, the same from run to run.
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": os.pathsep.join([tree, str(ROOT)])}
    few, many = (int(part) for part in args.rounds.split(","))
    first = counted(command, env, tree, args.conns, few)
    second = counted(command, env, tree, args.conns, many)
    per_reply = (second[0] - first[0]) / (second[1] - first[1])
    print(f"{per_reply:,.0f} instructions per reply ({args.conns} connections, one request in flight each)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
