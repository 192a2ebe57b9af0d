"""Scale-out: more than one process (`--workers N`, scale/workers.py) and more than one host
(the Redis backplane under the rooms, scale/redis_backplane.py).

    redis_backplane.py   RedisBackplane: the typed layer's `Rooms` over Redis
    redis_subscriber.py  the pub/sub connection: room channels, reconnects, catch-up hooks
    redis_presence.py    presence (and its copy per node), heartbeats, dead nodes, resets
    redis_stream.py      RedisStream: numbered broadcasts (seq, epoch, history)
    redis_wire.py        key names, message kinds and the numbering script (no gevent: the
                         Emitter uses them too)
    redis_sessions.py    resumable sessions
    redis_users.py       RedisUsers: a channel per user (send_to_user, disconnect_user)
    redis_ratelimit.py   RedisLeases: rate limits shared by every process, leased from Redis
    redis_io.py          connections on gevent sockets, the command pool, the publisher and
                         its failures counted and logged
    redis_urls.py        what a --redis URL names: one server, a master through Sentinel, or a
                         cluster (no gevent: the Emitter parses its URL there too)
    redis_connect.py     connections from a URL: the Sentinel master found and checked; a
                         backplane's clients for the URL's kind (RedisClients)
    redis_keys.py        key and channel names: as they are, or with a cluster's hash tags
    redis_cluster.py     ClusterMap: a cluster's slots and masters, read again as they change
    redis_cluster_io.py  commands and publishes routed by slot, redirections followed
    redis_cluster_subscriber.py  one sharded subscriber per cluster master
    workers.py           --workers: forked processes on one port
    listeners.py         the listening sockets the master opens: one per worker slot, kept
    rolling.py           SIGHUP: the workers replaced one at a time with the code on disk
    worker_liveness.py   each worker's hub stamps the time; the master replaces a silent one
    steering.py          one client address, one worker: the reuseport BPF program
    cpu_quota.py         --workers auto: the affinity mask and the cgroup's CPU quota

Above the typed layer (the backplane implements its `Rooms`), below the edges (the CLI).
Importing this package needs neither redis-py nor a Redis server; the backplane module does.
"""
