"""Prometheus metrics of the tagging consumer (``imgtag drain`` / ``imgtag worker``).

Exposed on ``--metrics-port``; the names here are the ones dashboards and alerts use.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

TAGGED = Counter("imgtag_images_tagged_total", "Images tagged and committed to the catalog.")
FAILURES = Counter(
    "imgtag_tagging_failures_total", "Tagging messages sent to the dead-letter queue, by reason.", ["reason"]
)
BATCH_SECONDS = Histogram(
    "imgtag_batch_seconds",
    "Time to tag and commit one batch.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64),
)
QUEUE_DEPTH = Gauge("imgtag_queue_depth", "Tagging messages waiting in the queue.")
RECONNECTS = Counter("imgtag_broker_reconnects_total", "Connections to RabbitMQ re-opened after a loss.")


def serve(port: int) -> None:
    """Serve ``/metrics`` on ``port`` (all interfaces) from a background thread."""
    start_http_server(port)
