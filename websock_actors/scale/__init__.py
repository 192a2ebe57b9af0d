"""Scale-out: more than one process (`--workers N`, scale/workers.py) and more than one host
(the Redis backplane under the rooms, scale/redis_backplane.py).

Above the typed layer (the backplane implements its `Rooms`), below the edges (the CLI).
Importing this package needs neither redis-py nor a Redis server; the backplane module does.
"""
