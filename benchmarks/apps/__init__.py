"""Server processes that benchmark scripts start (`python -m benchmarks.apps.<name>`, from the
repository root):

- `serving`: the line protocol they share (`PORT <n>` once listening, `STATS <json>` on SIGUSR1
  and once more after SIGTERM, which stops the server) and `serve_app`, which the nodes use;
- `broadcast_node`: the chat demo, rate limits off, alone or on a RedisBackplane (redis_broadcast.py);
- `resume_node`: a chat-protocol app with resumption off or on (resume_cost.py).
"""
