"""What session resumption's numbered broadcasts (seq, epoch) and room history cost.

    .venv/bin/python benchmarks/resume_cost.py            # 1,000 members, 2,000 broadcasts, 3 rounds
    .venv/bin/python benchmarks/resume_cost.py --quick    # smoke run: 100 members, 200 broadcasts, 1 round
    .venv/bin/python benchmarks/resume_cost.py --scenarios local,redis1 --json out.json

Needs /usr/bin/redis-server (or --redis-server PATH), node and `npm install` in benchmarks/.

1. Broadcast throughput into one room (typed_load.js `broadcast`), resumption off and on
   (`ResumePolicy(window=120, history=1000, grace=10)`), on apps/resume_node.py:
     local   one node, rooms in process (LocalRooms)
     redis1  one node with RedisBackplane (on: one EVAL per broadcast)
     redis2  two nodes with RedisBackplane, members round-robin over A and B
   Rounds interleave off and on; medians of deliveries/s, CPU per broadcast, Redis usec per
   EVAL or PUBLISH and TCP segments per delivery. Nodes on CPU 0, the rest on CPU 1.
2. Memory per room of --history messages of ~100 and ~1,000 bytes: a LocalStream's (by
   tracemalloc), and Redis's MEMORY USAGE of a room's stream and seq keys.
3. The stamp itself per broadcast (microseconds, medians of timed loops), in process and as
   Redis's usec per EVAL against a plain PUBLISH.

Bounded: every wait has a timeout, the whole invocation --max-seconds; only 127.0.0.1; every
process is ours and stopped by its PID. Exits 1 when a run failed (left out of the medians).
"""

from __future__ import annotations

import argparse
import gc
import signal
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script too, the harness is imported as benchmarks.harness

from pydantic import BaseModel  # noqa: E402

from benchmarks.harness.node import BroadcastLoad, add_broadcast_options  # noqa: E402
from benchmarks.harness.output import cell as fmt  # noqa: E402
from benchmarks.harness.output import write_json  # noqa: E402
from benchmarks.harness.ports import data_segments_out  # noqa: E402
from benchmarks.harness.preflight import Watchdog, add_run_options, prepare_run  # noqa: E402
from benchmarks.harness.processes import Failed, ServerProcess, measured, pinned  # noqa: E402
from benchmarks.harness.procstat import cpu_ns  # noqa: E402
from benchmarks.harness.redis_runner import RedisServer  # noqa: E402
from benchmarks.harness.stats import median_of as median  # noqa: E402
from websock_actors.server.broadcast import encode_broadcast  # noqa: E402
from websock_actors.typed.history import LocalStream, stamp_head  # noqa: E402
from websock_actors.typed.numbered import NumberedBroadcasts  # noqa: E402
from websock_actors.typed.rooms import LocalRooms  # noqa: E402
from websock_actors.typed.streams import Position  # noqa: E402

SCENARIOS = ("local", "redis1", "redis2")
MODES = ("off", "on")


def start_node(name: str, url: str | None, mode: str, size: int, cpu: int | None, log: Path) -> ServerProcess:
    """benchmarks/apps/resume_node.py: resumption `mode` on or off, RedisBackplane(url) or
    LocalRooms (url None), messages of `size` bytes of JSON before the stamp."""
    command = [sys.executable, "-m", "benchmarks.apps.resume_node", url or "-", mode, str(size)]
    return ServerProcess(name, pinned(cpu, command), log)


def command_stats(client: Any) -> dict[str, dict[str, int]]:
    """`INFO commandstats` (`client`: a redis.Redis): calls, usec, failed calls per command."""
    stats = client.info("commandstats")
    return {
        key.removeprefix("cmdstat_"): {
            "calls": int(v["calls"]),
            "usec": int(v["usec"]),
            "failed": int(v.get("failed_calls", 0)) + int(v.get("rejected_calls", 0)),
        }
        for key, v in stats.items()
    }


def run_once(
    scenario: str, mode: str, args: argparse.Namespace, redis_server: RedisServer, workdir: Path, index: int
) -> dict[str, Any]:
    """One run: its figures (raises Failed when it did not deliver everything, once, in order)."""
    url = None if scenario == "local" else redis_server.url
    if url is not None:
        redis_server.client.flushall()
    names = ("A", "B") if scenario == "redis2" else ("A",)
    nodes: list[ServerProcess] = []
    load: BroadcastLoad | None = None
    result: dict[str, Any] = {"scenario": scenario, "mode": mode}
    try:
        for name in names:
            log = workdir / f"run{index:02d}-{scenario}-{mode}-{name}.log"
            nodes.append(start_node(name, url, mode, args.size, args.server_cpu, log))
        load = BroadcastLoad(args, ["--urls", ",".join(n.url for n in nodes), "--sender-url", nodes[0].url])
        load.wait_joined(args.join_timeout)

        procs = {n.name: n.pid for n in nodes} | {"redis": redis_server.pid, "load": load.pid}
        ns0 = {name: cpu_ns(pid) for name, pid in procs.items()}
        segments0 = sum(data_segments_out(n.port) for n in nodes)
        cmd0 = command_stats(redis_server.client) if url else {}
        stats0 = [n.stats() for n in nodes]
        load.say_all(args.timeout + 30)
        ns1 = {name: cpu_ns(pid) for name, pid in procs.items()}
        segments1 = sum(data_segments_out(n.port) for n in nodes)
        cmd1 = command_stats(redis_server.client) if url else {}
        stats1 = [n.stats() for n in nodes]
        result.update(load.figures())
        cpu_us = {name: (ns1[name] - ns0[name]) / 1e3 for name in procs}
        if result.get("delivered"):  # TCP sends of the nodes per frame (less than 1: frames written together)
            result["segments_per_delivery"] = round((segments1 - segments0) / result["delivered"], 3)
        result["node_us_per_broadcast"] = sum(cpu_us[n.name] for n in nodes) / args.messages
        elapsed_us = float(result.get("elapsed_s") or 0) * 1e6
        if elapsed_us:  # CPU seconds per second of the say phase: who was the limit?
            result["busy"] = {name: round(us / elapsed_us, 2) for name, us in cpu_us.items()}
        if url:
            result["redis_cpu_us_per_broadcast"] = cpu_us["redis"] / args.messages
            # on: the numbering script, by its text once and then by its SHA
            commands = ("eval", "evalsha") if mode == "on" else ("publish",)
            calls = sum(cmd1.get(c, {}).get("calls", 0) - cmd0.get(c, {}).get("calls", 0) for c in commands)
            usec = sum(cmd1.get(c, {}).get("usec", 0) - cmd0.get(c, {}).get("usec", 0) for c in commands)
            result["redis_calls"] = calls
            result["redis_usec_per_broadcast"] = usec / calls if calls else None
            result["redis_failed_calls"] = sum(
                v["failed"] - cmd0.get(k, {}).get("failed", 0) for k, v in cmd1.items()
            )
        result["counters"] = [
            {k: v - s0.get(k, 0) for k, v in s1.items() if isinstance(v, int) and not isinstance(v, bool)}
            for s0, s1 in zip(stats0, stats1, strict=True)
        ]
    finally:
        if load is not None:
            load.stop(10)
        for node in nodes:
            status = node.stop(15)
            if status not in (0, -signal.SIGTERM):
                result.setdefault("node_exit", {})[node.name] = status
    check(result, args)
    return result


def check(result: dict[str, Any], args: argparse.Namespace) -> None:
    problems = [
        f"{k}={result[k]}"
        for k in ("missing", "members_short", "members_over", "out_of_order")
        if result.get(k)
    ]
    if "node_exit" in result:
        problems.append(f"node exit status {result['node_exit']}")
    for counters in result.get("counters", []):
        for key in ("broadcast_failures", "publish_failures", "publisher_errors"):
            if counters.get(key):
                problems.append(f"{key}={counters[key]}")
    if result.get("redis_failed_calls"):
        problems.append(f"{result['redis_failed_calls']} Redis commands failed")
    if result.get("redis_calls") not in (None, args.messages):
        command = "EVAL" if result["mode"] == "on" else "PUBLISH"
        problems.append(f"{result['redis_calls']} Redis {command} for {args.messages} broadcasts")
    if problems:
        raise Failed(", ".join(problems), result)


# -- 2. memory per room ---------------------------------------------------------------------


class RoomedMessage(BaseModel):
    """What the bench's messages are to stamp_head: a model with a `room` field."""

    room: str


def chat_json(size: int) -> str:
    """A room message of `size` bytes of JSON, before its stamp (the node's `Chat` shape)."""
    base = '{"type":"message","room":"bench","name":"sender","text":"m1000","pad":""}'
    return base[:-2] + '"' + "x" * max(0, size - len(base)) + '"}'


class _Nobody:
    """A StreamSink with no members anywhere: what a stream keeps, without deliveries."""

    def follow(self, room: str) -> None:
        pass

    def unfollow(self, room: str) -> None:
        pass

    def deliver(self, room: str, position: Position, text: str, origin: str) -> None:
        pass


def _local_stream(kept: int) -> LocalStream:
    stream = LocalStream(kept, 86400.0, 1 << 30)
    stream.open(_Nobody())
    return stream


def local_history_bytes(size: int, kept: int, rooms: int) -> tuple[float, int]:
    """(bytes tracemalloc sees a LocalStream hold per room with `kept` messages, the stamped
    message's length)."""
    prefixes = [stamp_head(chat_json(size), f"room{r}", RoomedMessage) for r in range(rooms)]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        history = _local_stream(kept)
        for _ in range(kept):
            for r in range(rooms):
                history.append(f"room{r}", prefixes[r], "", "")
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    stamped = len(history.logs["room0"].entries[-1].text)
    return held / rooms, stamped


def redis_history(url: str, client: Any, size: int, kept: int, timeout: float) -> dict[str, float]:
    """Through a RedisBackplane of this process (no members; one subscriber of the room's
    channel, a redis-py client that reads nothing, stands for a node): `MEMORY USAGE` of the
    room's stream and meta keys after `kept` and 3 x `kept` numbered broadcasts, and Redis's
    commandstats usec per EVAL (numbered) and per PUBLISH (`kept` plain broadcasts)."""
    import gevent

    from websock_actors import RedisBackplane

    client.flushall()
    room = f"mem{size}"
    subscriber = client.pubsub()
    subscriber.subscribe(f"wsa:room:{room}")
    backplane = RedisBackplane(url)
    stream = backplane.open_stream(kept, 86400, 1 << 30)
    stream.open(_Nobody())
    backplane.start()
    out: dict[str, float] = {}
    deadline = time.monotonic() + timeout

    def wait_for(done: Callable[[], bool], what: str) -> None:
        while not done():
            if time.monotonic() > deadline:
                raise Failed(f"{what} within {timeout:.0f} s")
            gevent.sleep(0.02)

    def numbered(count: int) -> Callable[[], bool]:
        return lambda: stream.position(room).seq >= count

    def calls(command: str) -> int:
        return command_stats(client).get(command, {}).get("calls", 0)

    try:
        wait_for(lambda: backplane.connected, "the backplane did not connect to redis-server")
        text = chat_json(size)
        prefix = stamp_head(text, room, RoomedMessage)
        sent = 0
        before = command_stats(client)
        for label, total in (("", kept), ("_steady", 3 * kept)):
            while sent < total:  # each answered once kept: 200 at a time in flight
                batch = min(200, total - sent)
                gevent.joinall([gevent.spawn(stream.append, room, prefix, "", "") for _ in range(batch)])
                sent += batch
            wait_for(numbered(total), f"Redis numbered {total}")
            out["stream" + label] = int(client.memory_usage(f"wsa:history:{room}", samples=0))
            out["meta" + label] = int(client.memory_usage(f"wsa:seq:{room}", samples=0))
            out["xlen" + label] = int(client.xlen(f"wsa:history:{room}"))
        after = command_stats(client)
        out["eval_usec"] = (after["eval"]["usec"] - before.get("eval", {}).get("usec", 0)) / sent
        frame = encode_broadcast(text)
        published = calls("publish")
        for i in range(kept):
            backplane.broadcast(room, frame)
            if i % 200 == 199:
                gevent.sleep(0)
        wait_for(lambda: calls("publish") >= published + kept, f"Redis took {kept} PUBLISH")
        final = command_stats(client)
        out["publish_usec"] = (final["publish"]["usec"] - after.get("publish", {}).get("usec", 0)) / kept
        if backplane.stats.publish_failures:
            raise Failed(f"publishes failed: {backplane.stats}")
    finally:
        backplane.stop()
        subscriber.close()
    return out


# -- 3. the stamp itself -----------------------------------------------------------------------


def loop_us(func: Callable[[], object], loops: int) -> float:
    """Microseconds per call of `func` over one loop of `loops` calls."""
    started = time.perf_counter()
    for _ in range(loops):
        func()
    return (time.perf_counter() - started) / loops * 1e6


def stamp_costs(loops: int, kept: int, repeats: int = 7) -> dict[str, float]:
    """Per call (us), medians over `repeats` rounds that time each function in turn (host noise
    hits them all): stamp_head + append, and a broadcast off and on in a room without members
    (`diff_<size>`: the median of the rounds' on - off)."""
    out: dict[str, float] = {}
    for size in (100, 1000):
        text = chat_json(size)
        prefix = stamp_head(text, "bench", RoomedMessage)
        history = _local_stream(kept)
        off, on = LocalRooms(), LocalRooms()
        on_stream = on.open_stream(kept, 86400.0, 1 << 30)
        NumberedBroadcasts(on, on_stream, encode_broadcast, lambda conn: "")  # the stream's sink
        for _ in range(kept):  # full rings: every append drops the oldest, as in a busy room
            history.append("bench", prefix, "", "")
            on_stream.append("bench", prefix, "", "")

        def stamp(text: str = text, history: LocalStream = history) -> None:
            history.append("bench", stamp_head(text, "bench", RoomedMessage), "", "")

        def broadcast(text: str = text, rooms: LocalRooms = off) -> int:
            return rooms.broadcast("bench", encode_broadcast(text))

        def publish(text: str = text, stream: Any = on_stream) -> None:
            stream.append("bench", stamp_head(text, "bench", RoomedMessage), "", "")

        funcs: dict[str, Callable[[], object]] = {"stamp": stamp, "broadcast": broadcast, "publish": publish}
        timings: dict[str, list[float]] = {name: [] for name in funcs}
        for _ in range(repeats):
            for name, func in funcs.items():
                timings[name].append(loop_us(func, loops))
        for name, values in timings.items():
            out[f"{name}_{size}"] = statistics.median(values)
        diffs = [b - a for a, b in zip(timings["broadcast"], timings["publish"], strict=True)]
        out[f"diff_{size}"] = statistics.median(diffs)
    return out


# -- the report ----------------------------------------------------------------------------------


def report_throughput(results: dict[tuple[str, str], list[dict[str, Any]]], args: argparse.Namespace) -> None:
    print(
        f"\n1. broadcast into one room: {args.conns:,} members, {args.messages:,} broadcasts of "
        f"{args.size} B of JSON (+ the stamp when on), {args.window} in flight; "
        f"medians of {args.rounds} round(s)"
    )
    pairs = [
        ("deliveries/s", "deliveries_per_s", ",.0f", 9),
        ("p50 ms", "p50_ms", ".1f", 5),
        ("node CPU us/b", "node_us_per_broadcast", ",.0f", 6),
        ("redis CPU us/b", "redis_cpu_us_per_broadcast", ".1f", 6),
        ("redis cmd us", "redis_usec_per_broadcast", ".1f", 5),
    ]
    top = f"{'':9}"
    sub = f"{'scenario':9}"
    for title, key, _spec, width in pairs:
        span = 2 * width + 1 + (7 if key == "deliveries_per_s" else 0)
        top += f" | {title:^{span}}"
        sub += f" | {'off':>{width}} {'on':>{width}}" + (
            f" {'on/off':>6}" if key == "deliveries_per_s" else ""
        )
    print(top)
    print(sub)
    print("-" * len(sub))
    for scenario in args.scenario_list:
        off = [r for r in results[(scenario, "off")] if "error" not in r]
        on = [r for r in results[(scenario, "on")] if "error" not in r]
        line = f"{scenario:9}"
        for _title, key, spec, width in pairs:
            a, b = median(off, key), median(on, key)
            line += f" | {fmt(a, spec):>{width}} {fmt(b, spec):>{width}}"
            if key == "deliveries_per_s":
                line += f" {fmt(b / a if a and b else None, '.2f'):>6}"
        failed = sum(len(results[(scenario, m)]) for m in MODES) - len(off) - len(on)
        print(line + (f"   ({failed} runs failed)" if failed else ""))
    print("  the say phase's CPU seconds per second (median) and deliveries/s max/min over the rounds:")
    for scenario in args.scenario_list:
        figures = []
        for mode in MODES:
            ok = [r for r in results[(scenario, mode)] if "error" not in r and "busy" in r]
            if not ok:
                continue
            rates = [r["deliveries_per_s"] for r in ok]
            busy = ", ".join(
                f"{name} {statistics.median(r['busy'][name] for r in ok):.2f}"
                for name in ok[0]["busy"]
                if name != "redis" or scenario != "local"
            )
            segments = median(ok, "segments_per_delivery")
            figures.append(
                f"{mode}: {busy}, segs/frame {fmt(segments, '.2f')}, spread {max(rates) / min(rates):.2f}"
            )
        if figures:
            print(f"    {scenario:8} " + " | ".join(figures))
    print(
        "  (A, B: the nodes, load: the load generator; redis includes its fixed background work;\n"
        "  segs/frame: the nodes' TCP data segments (ss -ti) per delivery; below 1: frames sent together)\n"
        "  node CPU us/b: the node(s)' CPU per broadcast over the say phase (every member's delivery);\n"
        "  redis CPU us/b: redis-server's; redis cmd us: its commandstats usec per PUBLISH (off), EVAL (on)"
    )


def report_memory(
    local: dict[int, tuple[float, int]], remote: dict[int, dict[str, float]], args: argparse.Namespace
) -> None:
    kept = args.history
    print(f"\n2. memory per room of history ({kept:,} messages kept)")
    header = (
        f"{'message (stamped)':>17} | {'in process':>10} {'B/msg':>5} | {'redis stream':>12} {'B/msg':>5} "
        f"{'meta B':>6} | {'after 3x':>8} {'XLEN':>5}"
    )
    print(header)
    print("-" * len(header))
    for size in sorted(local):
        held, stamped = local[size]
        r = remote.get(size, {})
        stream, steady = r.get("stream"), r.get("stream_steady")
        print(
            f"{f'{size} B ({stamped} B)':>17} | {f'{held / 1024:.0f} KiB':>10} {held / kept:>5.0f} | "
            f"{fmt(stream / 1024 if stream else None, '.0f') + ' KiB':>12} "
            f"{fmt(stream / kept if stream else None, '.0f'):>5} {fmt(r.get('meta'), '.0f'):>6} | "
            f"{fmt(steady / 1024 if steady else None, '.0f') + ' KiB':>8} "
            f"{fmt(r.get('xlen_steady'), '.0f'):>5}"
        )
    print(
        f"  in process: tracemalloc, {args.memory_rooms} rooms' LocalStream / {args.memory_rooms}; redis: "
        "MEMORY USAGE SAMPLES 0 of wsa:history:<room>\n  (the stream) and wsa:seq:<room> (meta), after "
        f"{kept:,} and {3 * kept:,} broadcasts (XLEN: what MAXLEN ~ kept)"
    )


def report_stamp(costs: dict[str, float], remote: dict[int, dict[str, float]], loops: int) -> None:
    print(f"\n3. the stamp per broadcast (us; in process: medians of 7 interleaved loops of {loops:,} calls)")
    header = (
        f"{'message':>7} | {'stamp_head + append':>21} | {'off: broadcast':>14} {'on: publish':>11} "
        f"{'on - off':>8} | {'redis PUBLISH':>13} {'EVAL':>5}"
    )
    print(header)
    print("-" * len(header))
    for size in (100, 1000):
        off, on, diff = costs[f"broadcast_{size}"], costs[f"publish_{size}"], costs[f"diff_{size}"]
        r = remote.get(size, {})
        print(
            f"{f'{size} B':>7} | {costs[f'stamp_{size}']:>21.2f} | {off:>14.2f} {on:>11.2f} {diff:>8.2f} | "
            f"{fmt(r.get('publish_usec'), '.2f'):>13} {fmt(r.get('eval_usec'), '.2f'):>5}"
        )
    print(
        "  broadcast, publish: LocalRooms in a room without members (the fixed cost before any delivery);\n"
        "  redis: commandstats usec per call through a RedisBackplane, one subscriber, no other load"
    )


def run_rounds(
    args: argparse.Namespace,
    redis_server: RedisServer,
    workdir: Path,
    results: dict[tuple[str, str], list[dict[str, Any]]],
) -> bool:
    """Every scenario, off and on (the order flips every round), into `results`: True when a run failed."""
    failed = False
    index = 0
    for round_number in range(1, args.rounds + 1):
        for scenario in args.scenario_list:
            for mode in MODES if round_number % 2 else MODES[::-1]:
                index += 1
                result, broke = measured(
                    f"round {round_number} {scenario} {mode}",
                    lambda s=scenario, m=mode, i=index: run_once(s, m, args, redis_server, workdir, i),
                    lambda r: (
                        f"{r['deliveries_per_s']:,} deliveries/s, p50 {r['p50_ms']} ms, "
                        f"node {r['node_us_per_broadcast']:.0f} us/broadcast"
                    ),
                    {"scenario": scenario, "mode": mode},
                )
                failed = failed or broke
                result["round"] = round_number
                results[(scenario, mode)].append(result)
    return failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_broadcast_options(parser, messages=2000, timeout=120.0)
    parser.add_argument("--size", type=int, default=100, help="bytes of a message's JSON before the stamp")
    parser.add_argument(
        "--rounds", type=int, default=None, help="rounds of off and on (default 3, 1 with --quick)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 100 members, 200 broadcasts, 1 round"
    )
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help="comma separated: " + ",".join(SCENARIOS)
    )
    parser.add_argument(
        "--history", type=int, default=1000, help="messages kept per room (the policy's history)"
    )
    parser.add_argument("--memory-rooms", type=int, default=10, help="rooms of the in-process memory figure")
    parser.add_argument("--loops", type=int, default=None, help="calls per timed loop (default 100,000)")
    add_run_options(parser, max_seconds=1200)
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    args = parser.parse_args()
    if args.quick:
        args.conns = 100 if args.conns == 1000 else args.conns
        args.messages = 200 if args.messages == 2000 else args.messages
    if min(args.conns, args.messages, args.window, args.history, args.memory_rooms) < 1:
        parser.error("--conns, --messages, --window, --history and --memory-rooms must be at least 1")
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.loops = args.loops or (20_000 if args.quick else 100_000)
    args.scenario_list = [s for s in args.scenarios.split(",") if s]
    if unknown := set(args.scenario_list) - set(SCENARIOS):
        parser.error(f"unknown scenarios {sorted(unknown)}")
    prepare_run(args, parser)
    started = time.monotonic()
    failed = False
    results: dict[tuple[str, str], list[dict[str, Any]]] = {
        (s, m): [] for s in args.scenario_list for m in MODES
    }
    local_memory: dict[int, tuple[float, int]] = {}
    redis_memory: dict[int, dict[str, float]] = {}
    costs: dict[str, float] = {}
    tmp = tempfile.TemporaryDirectory(prefix="resume_cost-")
    workdir = Path(tmp.name)
    redis_server: RedisServer | None = None
    try:
        costs = stamp_costs(args.loops, args.history)
        for size in (100, 1000):
            local_memory[size] = local_history_bytes(size, args.history, args.memory_rooms)
        redis_server = RedisServer(args.redis_server, args.client_cpu, workdir)
        for size in (100, 1000):
            redis_memory[size] = redis_history(redis_server.url, redis_server.client, size, args.history, 60)
        failed = run_rounds(args, redis_server, workdir, results)
    except (Watchdog, Failed) as exc:
        failed = True
        print(f"stopped: {exc}", file=sys.stderr)
    finally:
        signal.alarm(0)
        if redis_server is not None:
            redis_server.stop()
    if any(results.values()):
        report_throughput(results, args)
    if local_memory:
        report_memory(local_memory, redis_memory, args)
    if costs:
        report_stamp(costs, redis_memory, args.loops)
    problems = []
    for log in sorted(workdir.glob("run*.log")):
        problems += [
            f"{log.name}: {line}" for line in log.read_text(errors="replace").splitlines() if line.strip()
        ]
    if problems:
        print(f"\nnode log lines ({len(problems)}):")
        for line in problems[:20]:
            print("  " + line)
    print(f"\n({time.monotonic() - started:.0f} s)")
    if args.json is not None:
        write_json(
            args.json,
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "runs": {f"{s}/{m}": r for (s, m), r in results.items()},
                "memory_local": local_memory,
                "memory_redis": redis_memory,
                "stamp_us": costs,
            },
        )
    tmp.cleanup()
    if failed:
        print("FAILED: at least one run did not complete (see above)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
