"""The tagging consumer behind ``imgtag drain`` and ``imgtag worker``.

One loop, two ways to end: ``drain`` stops when the queue stays empty for a moment (or at
``--max-messages`` / ``--max-seconds``), ``worker`` runs until SIGTERM or SIGINT. Either way:

- messages are taken in batches of a few inference batches (prefetch is twice that, so the
  next batch arrives while one is tagged) and tagged with the batched engine;
- each batch is tagged with the thresholds set for the tagger's model on the thresholds page
  (``catalog.services.threshold_overrides``, read again for every batch: no restart needed);
- the work runs in a separate thread while the main thread keeps servicing the connection,
  so heartbeats stay alive however long inference takes (pika is not thread-safe: only the
  main thread touches the channel);
- tags are committed to the catalog, and only then are the messages acked: a crash before the
  commit redelivers them, and a redelivered message that was committed already changes
  nothing (``record_tags`` is an idempotent upsert);
- a message that cannot be parsed, names an unknown asset, or whose image cannot be read or
  decoded goes to the dead-letter queue with its reason in a header, and the asset (when there
  is one) is marked ``failed`` with the error; the rest of the batch is tagged;
- a lost connection (broker restart, ``close_all_connections``) is re-opened with backoff;
  what was in flight is redelivered by the broker;
- **one poison message never sinks good ones**: a redelivered message (a worker died, was
  killed for memory, or lost its connection while it held it) is moved to ``<queue>.suspect``
  instead of being batched again. Suspects are taken one at a time (``basic_get``: nothing else
  from that queue is held), before consuming and between batches, so a message that kills the
  process is the only one whose delivery count grows there: at ``IMGTAG_DELIVERY_LIMIT`` it is
  dead-lettered with reason ``crashed_worker`` and its asset marked ``failed``, while the
  messages that shared its batch are tagged;
- when the model server (TF Serving, ``IMGTAG_PREDICTOR=rest|grpc``) cannot be reached, the
  batch is held, unacked, and tried again with backoff until the server is back: nothing is
  dead-lettered for an outage, and ``imgtag_serving_waits_total`` tells the alert. A stop
  request during the wait hands the batch back to the queue;
- **a dropped database is an outage, not a crash**: when the catalog's database connection
  fails (PostgreSQL restarted, a backend terminated, a failover), the broken connection is
  closed and the batch is tagged again, with backoff, while the broker keeps its messages
  (unacked, heartbeats alive); tags already committed are upserted again, unchanged. When the
  database stays away longer than ``database_wait`` seconds, every message this worker holds
  is published again as a fresh message (confirmed, then acked: none is counted a suspect, as a
  redelivery would be) and the command exits 75 (:class:`catalog.runtime.CatalogUnreachable`).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from django.db import InterfaceError, OperationalError, connections
from pika.exceptions import AMQPError

from catalog.runtime import CatalogUnreachable
from catalog.storage import get_storage
from core import broker, metrics
from core.settings import Settings
from serving.predictors import ServingUnavailable

RECONNECT_BUDGET_SECONDS = 120.0
BATCHES_PER_COMMIT = 4
SERVING_RETRY_MAX_SECONDS = 30.0
DATABASE_RETRY_MAX_SECONDS = 10.0
#: How long a worker holds its messages while the database is away before handing them back.
DATABASE_WAIT_SECONDS = 120.0
#: What a lost database connection raises (psycopg's errors, as Django wraps them).
DATABASE_ERRORS = (OperationalError, InterfaceError)

log = logging.getLogger(__name__)


@dataclass
class DrainSummary:
    received: int = 0
    tagged: int = 0
    dead_lettered: int = 0
    reasons: Counter = field(default_factory=Counter)
    reconnects: int = 0
    serving_waits: int = 0
    database_waits: int = 0  # batches tried again because the database connection failed
    suspects: int = 0  # redelivered messages set aside to be tagged one at a time
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {
            "received": self.received,
            "tagged": self.tagged,
            "dead_lettered": self.dead_lettered,
            "dead_letter_reasons": dict(self.reasons),
            "reconnects": self.reconnects,
            "serving_waits": self.serving_waits,
            "database_waits": self.database_waits,
            "suspects": self.suspects,
            "seconds": round(self.seconds, 2),
        }


def tag_batch(tagger, deliveries: list[tuple[object, object, bytes]]) -> list[tuple[str, str]]:
    """Tag one batch of raw deliveries and commit the results; runs in the work thread.

    Returns:
        One ``(reason, error)`` per delivery: ``("", "")`` when tagged, otherwise why it goes
        to the dead-letter queue.
    """
    # Django models: importable only once catalog.runtime.setup() has run
    from catalog import services

    # Django models: importable only once catalog.runtime.setup() has run
    from catalog.models import Asset

    outcome: list[tuple[str, str]] = [("", "")] * len(deliveries)
    parsed = []
    for i, (_, _, body) in enumerate(deliveries):
        try:
            parsed.append((i, broker.TaggingMessage.decode(body)))
        except broker.BadMessage as exc:
            outcome[i] = ("bad_message", f"cannot parse the tagging message: {exc}")
    assets = Asset.objects.in_bulk([m.asset_id for _, m in parsed])
    storage = get_storage()
    items = []
    for i, message in parsed:
        asset = assets.get(message.asset_id)
        if asset is None or asset.sha256 != message.sha256:
            outcome[i] = (
                "unknown_asset",
                f"asset {message.asset_id} ({message.sha256[:12]}) is not in the catalog",
            )
            continue
        items.append(((i, asset), (lambda uri=asset.uri: storage.read(uri)), asset.filename))
    # the thresholds people set for this model (the thresholds page), read again for every batch
    tagger = services.with_catalog_thresholds(tagger)
    results = list(tagger.tag_images(items))
    for result in results:
        if not result.ok:
            outcome[result.key[0]] = (result.error.reason, str(result.error))
    services.record_results(results, tagger, asset_of=lambda key: key[1])
    return outcome


class Consumer:
    """Consumes the tagging queue; see the module docstring.

    Args:
        tagger: a :class:`core.tagger.Tagger`, or a function returning the tagger to use
            for the next batch (``serving.current.get_tagger``: a long-running worker then
            switches to a newly promoted champion between batches).
        settings: queue names, broker URL, batch size.
    """

    def __init__(
        self,
        tagger,
        settings: Settings,
        *,
        linger_seconds: float = 0.3,
        database_wait: float = DATABASE_WAIT_SECONDS,
    ):
        self._tagger = tagger
        self.database_wait = database_wait
        self.settings = settings
        # Messages handled per commit: a few inference batches, so that decoding the next
        # inference batch overlaps the model within one call of the engine.
        self.batch_size = self.settings.batch_size * BATCHES_PER_COMMIT
        self.linger = linger_seconds
        self.stop_requested = threading.Event()
        self.summary = DrainSummary()

    @property
    def tagger(self):
        """The tagger for the next batch."""
        return self._tagger(self.settings) if callable(self._tagger) else self._tagger

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT finish the current batch, then stop."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop_requested.set())

    def run(
        self,
        *,
        max_messages: int | None = None,
        max_seconds: float | None = None,
        idle_seconds: float | None = 2.0,
    ) -> DrainSummary:
        """Consume until stopped, idle for ``idle_seconds`` (None: never), or a limit is hit.

        Raises:
            broker.BrokerUnavailable: the broker stayed unreachable for the reconnect budget.
            catalog.runtime.CatalogUnreachable: the database stayed away for ``database_wait``
                seconds; the messages held were handed back to their queues first.
        """
        started = time.monotonic()
        deadline = started + max_seconds if max_seconds else None
        lost_since = None
        with ThreadPoolExecutor(1, thread_name_prefix="tagging") as work:
            while not self._finished(max_messages, deadline):
                try:
                    connection = broker.connect(self.settings)
                except broker.BrokerUnavailable:
                    lost_since = lost_since or time.monotonic()
                    if (
                        time.monotonic() - lost_since > RECONNECT_BUDGET_SECONDS
                        or self.stop_requested.is_set()
                    ):
                        raise
                    time.sleep(1.0)
                    continue
                lost_since = None
                try:
                    done = self._consume(connection, work, max_messages, deadline, idle_seconds)
                except (AMQPError, broker.PublishRefused):  # a dead letter refused: redelivered after
                    self.summary.reconnects += 1
                    metrics.RECONNECTS.inc()
                    continue
                finally:
                    try:
                        if connection.is_open:
                            connection.close()
                    except AMQPError:
                        pass
                if done:
                    break
        self.summary.seconds = time.monotonic() - started
        return self.summary

    def _finished(self, max_messages, deadline) -> bool:
        return (
            self.stop_requested.is_set()
            or (max_messages is not None and self.summary.received >= max_messages)
            or (deadline is not None and time.monotonic() >= deadline)
        )

    def _consume(self, connection, work, max_messages, deadline, idle_seconds) -> bool:
        """Consume on one connection; True when finished, AMQPError when the connection died.

        Raises:
            catalog.runtime.CatalogUnreachable: the database stayed away; every message held
                (the batch being tagged and those prefetched) was handed back first.
        """
        channel = connection.channel()
        channel.confirm_delivery()
        broker.declare(channel, self.settings)
        channel.basic_qos(prefetch_count=2 * self.batch_size)
        inbox: list = []
        try:
            return self._consume_into(connection, channel, work, inbox, max_messages, deadline, idle_seconds)
        except _DatabaseGone as gone:
            # Stop deliveries first: each ack below would free a prefetch slot, and a message
            # delivered into it after the hand-back would come back redelivered (a suspect).
            connection.process_data_events(time_limit=0)  # what has arrived joins the inbox
            if self._consumer_tag is not None:
                channel.basic_cancel(self._consumer_tag)
            self._hand_back(channel, gone.held + inbox)
            raise gone.error from None

    def _consume_into(
        self, connection, channel, work, inbox: list, max_messages, deadline, idle_seconds
    ) -> bool:

        def on_message(ch, method, properties, body):
            inbox.append((method, properties, body))

        self._consumer_tag = None
        self._tag_suspects(connection, channel, work, max_messages, deadline)  # before holding any other
        self._consumer_tag = channel.basic_consume(self.settings.queue, on_message)
        last_message = time.monotonic()
        while True:
            waiting = len(inbox)
            connection.process_data_events(time_limit=0.1)
            now = time.monotonic()
            if len(inbox) > waiting:
                last_message = now
            if any(method.redelivered for method, _, _ in inbox):
                inbox[:] = self._set_aside(channel, inbox)
                self._tag_suspects(connection, channel, work, max_messages, deadline)
            if max_messages is not None:
                room = max_messages - self.summary.received
                for method, _, _ in inbox[max(room, 0) :]:  # past the limit: back to the queue
                    channel.basic_nack(method.delivery_tag, requeue=True)
                del inbox[max(room, 0) :]
            ready = len(inbox) >= self.batch_size or (inbox and now - last_message >= self.linger)
            if inbox and (ready or self._finished(max_messages, deadline)):
                batch, inbox[:] = inbox[: self.batch_size], inbox[self.batch_size :]
                self._process(connection, channel, work, batch)
                self._tag_suspects(connection, channel, work, max_messages, deadline)  # other workers' too
                continue
            if self._finished(max_messages, deadline) and not inbox:
                return True
            if idle_seconds is not None and not inbox and now - last_message >= idle_seconds:
                self._tag_suspects(connection, channel, work, max_messages, deadline)
                return True

    def _set_aside(self, channel, inbox: list) -> list:
        """Move the redelivered messages of ``inbox`` to the suspect queue; returns the others."""
        publisher = _ChannelPublisher(channel, self.settings)
        fresh = []
        for method, properties, body in inbox:
            if not method.redelivered:
                fresh.append((method, properties, body))
                continue
            headers = {k: v for k, v in (properties.headers or {}).items() if k != "x-delivery-count"}
            publisher.publish_raw(body, self.settings.suspect_queue, headers=headers)  # confirmed,
            channel.basic_ack(method.delivery_tag)  # then acked: never lost, at worst held twice
            self.summary.suspects += 1
            metrics.SUSPECTS.inc()
        return fresh

    def _tag_suspects(self, connection, channel, work, max_messages, deadline) -> None:
        """Tag the suspect queue one message at a time, holding only that one."""
        while not self._finished(max_messages, deadline):
            method, properties, body = channel.basic_get(self.settings.suspect_queue, auto_ack=False)
            if method is None:
                return
            crashes = broker.deliveries(properties)
            if crashes >= self.settings.delivery_limit:
                self._give_up(channel, method, properties, body, crashes)
                continue
            self._process(connection, channel, work, [(method, properties, body)])

    def _give_up(self, channel, method, properties, body, crashes: int) -> None:
        """Dead-letter a message that stopped its worker ``crashes`` times, and fail its asset."""
        error = (
            f"the worker stopped {crashes} times while tagging this message alone (crashed, or killed "
            "for memory or time): the image probably needs more than a worker has; see `imgtag dead list`"
        )
        try:
            message = broker.TaggingMessage.decode(body)
        except broker.BadMessage:
            message = None
        if message is not None:
            # Django models: importable only once catalog.runtime.setup() has run
            from catalog import services

            # Django models: importable only once catalog.runtime.setup() has run
            from catalog.models import Asset

            asset = Asset.objects.filter(pk=message.asset_id, sha256=message.sha256).first()
            if asset is not None:
                services.mark_failed(asset, error)
        _ChannelPublisher(channel, self.settings).dead_letter(
            body, "crashed_worker", error, properties.headers
        )
        channel.basic_ack(method.delivery_tag)
        self.summary.received += 1
        self._count_dead_letter("crashed_worker")

    def _count_dead_letter(self, reason: str) -> None:
        self.summary.dead_lettered += 1
        self.summary.reasons[reason] += 1
        metrics.FAILURES.labels(reason=reason).inc()

    def _process(self, connection, channel, work, batch) -> None:
        self.summary.received += len(batch)
        started = time.monotonic()
        try:
            outcome = self._tag_when_served(connection, work, batch)
        except _DatabaseGone as gone:
            self.summary.received -= len(batch)
            gone.held = list(batch)
            raise
        if outcome is None:  # stopped while the model server was down: back to the queue
            for method, _, _ in batch:
                channel.basic_nack(method.delivery_tag, requeue=True)
            self.summary.received -= len(batch)
            return
        publisher = _ChannelPublisher(channel, self.settings)
        for (_method, properties, body), (reason, error) in zip(batch, outcome, strict=True):
            if reason:
                publisher.dead_letter(body, reason, error, properties.headers)
                self._count_dead_letter(reason)
            else:
                self.summary.tagged += 1
                metrics.TAGGED.inc()
                _observe_latency(body)
        for method, _, _ in batch:  # one by one: suspects and the queue's messages may interleave
            channel.basic_ack(method.delivery_tag)
        metrics.BATCH_SECONDS.observe(time.monotonic() - started)
        metrics.QUEUE_DEPTH.set(broker.queue_depth(channel, self.settings.queue))

    def _tag_when_served(self, connection, work, batch) -> list[tuple[str, str]] | None:
        """``tag_batch`` in the work thread, tried again while the model server or the database
        is unavailable.

        Returns:
            ``tag_batch``'s outcome, or None when a stop was requested during a model server outage.

        Raises:
            _DatabaseGone: the database stayed away for ``database_wait`` seconds, or a stop was
                requested while it was away (the caller hands the messages back).
        """

        delay, database_delay, database_lost = 1.0, 0.5, None
        while True:
            future = work.submit(tag_batch, self.tagger, batch)
            while not future.done():  # keep heartbeats and deliveries flowing while the model works
                connection.process_data_events(time_limit=0.05)
            try:
                return future.result()
            except ServingUnavailable as exc:
                self.summary.serving_waits += 1
                metrics.SERVING_WAITS.inc()
                log.warning("%s; holding %d messages, next try in %.0fs", exc, len(batch), delay)
                pause, delay = delay, min(delay * 2, SERVING_RETRY_MAX_SECONDS)
            except DATABASE_ERRORS as exc:
                work.submit(_close_database_connections).result()  # the work thread's own connection
                self.summary.database_waits += 1
                database_lost = database_lost or time.monotonic()
                if time.monotonic() - database_lost > self.database_wait or self.stop_requested.is_set():
                    raise _DatabaseGone(
                        CatalogUnreachable(
                            f"the catalog's database did not answer for {self.database_wait:.0f} s ({exc}); the "
                            "messages held were put back on the queue: start the database or fix DATABASE_URL, "
                            "then run this again"
                        )
                    ) from exc
                log.warning(
                    "the database connection failed (%s); holding %d messages, next try in %.1fs",
                    str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                    len(batch),
                    database_delay,
                )
                pause, database_delay = database_delay, min(database_delay * 2, DATABASE_RETRY_MAX_SECONDS)
            wake = time.monotonic() + pause
            while time.monotonic() < wake:
                if self.stop_requested.is_set() and database_lost is None:
                    return None
                connection.process_data_events(time_limit=0.2)

    def _hand_back(self, channel, held: list) -> None:
        """Publish fresh copies of the messages this worker holds to the queues they came from,
        then ack them: the broker keeps them, and none comes back marked as redelivered (a
        suspect) because the database, not the image, was the problem."""
        publisher = _ChannelPublisher(channel, self.settings)
        for method, properties, body in held:
            headers = {k: v for k, v in (properties.headers or {}).items() if k != "x-delivery-count"}
            publisher.publish_raw(body, method.routing_key or self.settings.queue, headers=headers)
            channel.basic_ack(method.delivery_tag)
        log.warning("handed %d messages back to the queue while the database is away", len(held))


class _DatabaseGone(Exception):
    """The database stayed away: carries the error the command ends with, once the messages are back."""

    def __init__(self, error: CatalogUnreachable):
        super().__init__(str(error))
        self.error = error
        self.held: list = []  # the batch being tagged


def _close_database_connections() -> None:
    """Close this thread's database connections, broken ones too: the next query opens a new one."""
    for connection in connections.all(initialized_only=True):
        try:
            connection.close()
        except DATABASE_ERRORS:
            connection.connection = None  # already dead: forget it


def _observe_latency(body: bytes) -> None:
    """Time from the message's ``requested_at`` to now, the tags being committed."""
    from datetime import datetime

    try:
        message = broker.TaggingMessage.decode(body)
        requested = datetime.fromisoformat(message.requested_at).timestamp()
    except (broker.BadMessage, ValueError, TypeError):
        return
    metrics.TAG_LATENCY.labels(reason=message.reason).observe(max(0.0, time.time() - requested))


class _ChannelPublisher(broker.Publisher):
    """A :class:`broker.Publisher` on an existing (confirming) channel."""

    def __init__(self, channel, settings: Settings):
        self.settings = settings
        self.channel = channel
        self.connection = None
