"""Prometheus metrics of the tagging consumer (``imgtag drain`` / ``imgtag worker``) and of
the TF Serving clients it uses (:mod:`serving.predictors`).

Exposed on ``--metrics-port``. The names here are the contract with the Grafana dashboard and
the alert rules in ``infra/k8s/base/monitoring``; ``tests/infra`` checks that every metric
they use is registered here.
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
SUSPECTS = Counter(
    "imgtag_suspect_messages_total",
    "Redelivered messages (a worker died holding them) set aside to be tagged one at a time.",
)
TAG_LATENCY = Histogram(
    "imgtag_tag_latency_seconds",
    "From the tagging request (upload or retag: the message's requested_at) to its tags committed.",
    ["reason"],
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600),
)
SERVING_REQUESTS = Counter(
    "imgtag_serving_requests_total",
    "Prediction requests to TF Serving, by predictor (rest, grpc) and outcome "
    "(ok; unavailable: not reached after the retries; error: refused or a bad answer).",
    ["predictor", "outcome"],
)
SERVING_SECONDS = Histogram(
    "imgtag_serving_request_seconds",
    "Time of one prediction request to TF Serving, retries included.",
    ["predictor"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32),
)
SERVING_WAITS = Counter(
    "imgtag_serving_waits_total",
    "Batches the worker held back (unacked, retried later) because TF Serving was unavailable.",
)


def serve(port: int) -> None:
    """Serve ``/metrics`` on ``port`` (all interfaces) from a background thread."""
    start_http_server(port)
