"""What the benchmark scripts share, one job per module:

- `ports`: a free loopback port, the wait until a server listens on one, `ss` counts of it;
- `processes`: children started and stopped by PID with bounded waits, CPU pinning, the fd limit;
- `procstat`: CPU time, RSS, fds and system calls of a PID, read from /proc;
- `stats`: medians and percentiles of rounds and samples;
- `output`: JSON result files and the formatting of figures in tables;
- `redis_runner`: a redis-server of the run's own (a free port, no persistence);
- `redis_cluster`: a Redis Cluster of 3 masters and 3 replicas (the tests' fixture uses it too);
- `redis_cluster_nodes`: one node process of it, its commands, CLUSTER NODES parsed;
- `node`: the Node `ws` load drivers (typed_load.js, tls_load.js) and their options;
- `preflight`: a run's CPU pinning, tool checks, fd limit and watchdog;
- `raw_websocket`: handshake and frames at the byte level, for hostile or cheap clients;
- `logs`: a server log's levels, tracebacks and first serious lines;
- `chat_server`: the chat demo as a server process (soak.py, under_attack.py).

Scripts put the repository root on sys.path first, so that both `python benchmarks/x.py` and
`python -m benchmarks.x` import this package as `benchmarks.harness`.
"""
