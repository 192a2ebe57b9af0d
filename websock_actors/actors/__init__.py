"""Actors on gevent: a greenlet and a bounded mailbox each, a supervisor that restarts them,
and a thread pool for the blocking calls that monkey-patching cannot make cooperative.

    actor.py       Actor (hooks) and ActorRef (tell, ask, stop)
    supervisor.py  Supervisor and RestartPolicy: one-for-one restarts within a cap
    offload.py     offload(func, ...): run a blocking call in an OS thread, wait cooperatively
"""

from ..errors import OffloadTimeout
from .actor import Actor, ActorRef
from .offload import configure_pool, offload
from .supervisor import RestartPolicy, Supervisor

__all__ = ["Actor", "ActorRef", "OffloadTimeout", "RestartPolicy", "Supervisor", "configure_pool", "offload"]
