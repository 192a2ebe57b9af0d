"""The chat demo without its rate limits, for the broadcast benchmarks: their one sender says
far faster than the demo lets a person type (50 messages a second per connection, `say` 5).

    websock-actors run benchmarks.chat_unlimited:app --port PORT --no-patch --ping-interval 0
"""

from __future__ import annotations

from examples.chat import app

__all__ = ["app"]

app.rate_limit = None
app.type_rate_limits = {}
app.join_rate = None
