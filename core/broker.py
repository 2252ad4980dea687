"""RabbitMQ for tagging: topology, the message contract, and publishing with confirms.

Topology (declared idempotently by every client that connects):

- ``<queue>`` (default ``imgtag.tagging``): durable quorum queue of tagging messages, with a
  delivery limit (``IMGTAG_DELIVERY_LIMIT``) after which the broker dead-letters a message
  that keeps failing (a worker crashing on it, for instance);
- ``<queue>.suspect``: messages that were delivered before and never acked (a worker died
  while it held them). Workers tag these one at a time, holding no other message from this
  queue, so a message that kills its worker is the only one whose delivery count grows: at the
  delivery limit it is dead-lettered alone (reason ``crashed_worker``) while the messages that
  shared its batch are tagged;
- exchange ``<queue>.dead`` (fanout) and queue ``<queue>.dead``: the dead letters, each with
  its reason in the ``x-imgtag-reason`` header (or the broker's ``x-death`` header when the
  delivery limit was reached).

Every message is persistent and published with publisher confirms and ``mandatory``: a
publish returns only once the broker has taken responsibility for it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import pika
from pika.exceptions import AMQPError, NackError

from core.errors import UnavailableError, UsageError
from core.settings import Settings

SCHEMA = 1
REASONS = ("upload", "retag")
REASON_HEADER = "x-imgtag-reason"
ERROR_HEADER = "x-imgtag-error"


class BrokerUnavailable(UnavailableError, ConnectionError):
    """RabbitMQ could not be reached; the message says where and what to do."""


class PublishRefused(BrokerUnavailable):
    """RabbitMQ kept refusing (nacking) a message: the queue is starting or over its limits."""


class QueueMismatch(UsageError, RuntimeError):
    """A queue exists with other arguments than these settings give it: a configuration error
    that no retry can fix (RabbitMQ closes the channel with 406 PRECONDITION_FAILED)."""


class BadMessage(UsageError, ValueError):
    """A tagging message that does not follow the contract."""


@dataclass(frozen=True)
class TaggingMessage:
    """``{"schema": 1, "asset_id", "sha256", "uri", "reason", "requested_at"}``."""

    asset_id: int
    sha256: str
    uri: str
    reason: str = "upload"
    requested_at: str = ""

    def encode(self) -> bytes:
        return json.dumps(
            {
                "schema": SCHEMA,
                "asset_id": self.asset_id,
                "sha256": self.sha256,
                "uri": self.uri,
                "reason": self.reason,
                "requested_at": self.requested_at or datetime.now(UTC).isoformat(),
            }
        ).encode()

    @classmethod
    def decode(cls, body: bytes) -> TaggingMessage:
        """Parse and check a message body.

        Raises:
            BadMessage: not JSON, another schema, or a missing or malformed field.
        """
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadMessage(f"not JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise BadMessage(f"expected a JSON object with schema {SCHEMA}")
        try:
            message = cls(
                int(data["asset_id"]),
                str(data["sha256"]),
                str(data["uri"]),
                str(data.get("reason", "upload")),
                str(data.get("requested_at", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BadMessage(f"missing or malformed field: {exc}") from None
        if message.reason not in REASONS:
            raise BadMessage(f"unknown reason {message.reason!r}")
        return message

    @classmethod
    def for_asset(cls, asset, reason: str = "upload") -> TaggingMessage:
        return cls(asset.pk, asset.sha256, asset.uri, reason)


def connect(settings: Settings, attempts: int = 1, heartbeat: int = 30) -> pika.BlockingConnection:
    """A blocking connection to ``IMGTAG_AMQP_URL``.

    Raises:
        BrokerUnavailable: after ``attempts`` failed tries (1 s, 2 s, 4 s ... apart).
    """
    params = pika.URLParameters(settings.amqp_url)
    params.heartbeat = heartbeat
    params.blocked_connection_timeout = 60
    params.connection_attempts = 1
    delay = 1.0
    for attempt in range(1, attempts + 1):
        try:
            return pika.BlockingConnection(params)
        except AMQPError as exc:
            if attempt == attempts:
                raise BrokerUnavailable(
                    f"RabbitMQ at {params.host}:{params.port} is not reachable ({exc!r}); start it "
                    "(rabbitmq-server -detached) or set IMGTAG_AMQP_URL"
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
    raise AssertionError("unreachable")


def declare(channel, settings: Settings) -> None:
    """Declare the tagging queue and its dead-letter exchange and queue (idempotent)."""
    channel.exchange_declare(settings.dead_queue, exchange_type="fanout", durable=True)
    channel.queue_declare(settings.dead_queue, durable=True, arguments={"x-queue-type": "quorum"})
    channel.queue_bind(settings.dead_queue, settings.dead_queue)
    for queue in (settings.queue, settings.suspect_queue):
        arguments = {
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": settings.dead_queue,
            "x-delivery-limit": settings.delivery_limit,
        }
        try:
            channel.queue_declare(queue, durable=True, arguments=arguments)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code != 406:
                raise
            raise QueueMismatch(
                f"RabbitMQ already has a queue {queue!r} with other arguments than {arguments} "
                f"({exc.reply_text}): set IMGTAG_DELIVERY_LIMIT (and IMGTAG_QUEUE) as the queue was "
                "made, or delete the queue once it is empty (rabbitmqctl delete_queue)"
            ) from None


PERSISTENT = pika.DeliveryMode.Persistent
NACK_ATTEMPTS = 6
NACK_FIRST_RETRY_SECONDS = 0.05  # then doubled: 1.55 s of waiting in all


class Publisher:
    """Publishes with confirms; use as a context manager.

    Raises:
        BrokerUnavailable: when the broker cannot be reached.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self.connection = connect(self.settings)
        self.channel = self.connection.channel()
        self.channel.confirm_delivery()
        declare(self.channel, self.settings)

    def publish(self, message: TaggingMessage) -> None:
        self.publish_raw(message.encode(), self.settings.queue)

    def publish_raw(self, body: bytes, queue: str, headers: dict | None = None, exchange: str = "") -> None:
        """Publish ``body`` and wait for the broker's confirm.

        A nack is retried a few times: a quorum queue nacks while it is still starting (two
        clients declaring a new queue at once see that) and while it rejects publishes.

        Raises:
            PublishRefused: the broker still refused the message after the retries.
        """
        properties = pika.BasicProperties(
            delivery_mode=PERSISTENT, content_type="application/json", headers=headers
        )
        delay = NACK_FIRST_RETRY_SECONDS
        for attempt in range(1, NACK_ATTEMPTS + 1):
            try:
                self.channel.basic_publish(exchange, queue, body, properties, mandatory=True)
                return
            except NackError:
                if attempt == NACK_ATTEMPTS:
                    raise PublishRefused(
                        f"RabbitMQ refused (nacked) a message for {exchange or queue!r} {NACK_ATTEMPTS} times: "
                        "the queue is not ready or rejects publishes (see its length limit and the "
                        "broker's log)"
                    ) from None
                time.sleep(delay)
                delay *= 2

    def publish_many(self, messages: Iterable[TaggingMessage]) -> int:
        count = 0
        for message in messages:
            self.publish(message)
            count += 1
        return count

    def dead_letter(self, body: bytes, reason: str, error: str, headers: dict | None = None) -> None:
        """Send a message to the dead-letter queue with its reason in the headers."""
        headers = {**(headers or {}), REASON_HEADER: reason, ERROR_HEADER: error[:1000]}
        self.publish_raw(body, "", headers=headers, exchange=self.settings.dead_queue)

    def close(self) -> None:
        try:
            self.connection.close()
        except AMQPError:
            pass

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def deliveries(properties) -> int:
    """How many times the broker delivered this message before (quorum queues' ``x-delivery-count``)."""
    return int((properties.headers or {}).get("x-delivery-count", 0) or 0)


def queue_depth(channel, queue: str) -> int:
    """Messages ready in ``queue`` (passive declare: never creates it)."""
    return channel.queue_declare(queue, passive=True).method.message_count
