"""The figures a typed App adds to the server's metrics (`GET /metrics`, the status page):
messages and handler time by type, error replies by code, broadcasts, actor restarts,
resumes and replays, limits hit."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import App

__all__ = ["app_metrics"]


def app_metrics(app: App) -> dict[str, dict[str, Any]]:
    """The app's figures, by metric name, then by label."""
    services = app.services
    rooms = services.rooms
    figures: dict[str, dict[str, Any]] = {
        **app.dispatcher.metrics(),
        "websock_error_replies_total": dict(services.error_replies),
        "websock_broadcast_deliveries_total": {"": rooms.deliveries},
        "websock_dropped_messages_total": {"broadcast_refused": rooms.broadcast_failures},
    }
    if app.supervisor is not None:
        figures["websock_actor_restarts_total"] = dict(app.supervisor.restarts_by_actor)
    limits = {"rooms_per_connection": services.rooms_refused}
    resumption = app.resumption
    if resumption is not None:
        figures["websock_resumes_total"] = dict(resumption.resumes)
        figures["websock_replayed_messages_total"] = {"": resumption.replayed}
        figures["websock_sessions_graced"] = {"": len(resumption.graced)}
        limits["resumes_per_minute"] = resumption.rate_refused
        numbered = resumption.numbered
        if numbered is not None:
            limits["replay"] = numbered.replays_cut
            limits["retained_rooms"] = numbered.histories_dropped
            figures["websock_room_lost_total"] = {"": numbered.lost_reports}
            figures["websock_room_caught_up_total"] = {"": numbered.caught_up}
    figures["websock_limit_hits_total"] = limits
    stats = getattr(rooms, "stats", None)
    if stats is not None:
        figures["websock_backplane_publish_failures_total"] = {"": stats.publish_failures}
    return figures
