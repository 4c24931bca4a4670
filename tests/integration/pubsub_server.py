"""A small Pub/Sub server for tests: the official ``google.pubsub_v1`` messages over gRPC.

No Pub/Sub emulator installs here, so this speaks just enough of the protocol
(CreateTopic, GetTopic, Publish, CreateSubscription, GetSubscription,
StreamingPull, Acknowledge, ModifyAckDeadline) for the official clients —
creating what exists is ``ALREADY_EXISTS``, as on the service —
reached through ``PUBSUB_EMULATOR_HOST``. Unacknowledged messages of a closed
stream, or nacked ones, are delivered again; ``acked`` lists acknowledged
message ids in order.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import empty_pb2, timestamp_pb2
from google.pubsub_v1 import types as t


@dataclass
class _Sub:
    topic: str
    spec: t.Subscription = field(default_factory=t.Subscription)
    """The subscription as created (ack deadline, retention, policies)."""
    ready: deque[t.PubsubMessage] = field(default_factory=deque)
    outstanding: dict[str, t.PubsubMessage] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)


class PubSubServer:
    """Start with :meth:`start`; ``host`` is what ``PUBSUB_EMULATOR_HOST`` should say."""

    def __init__(self) -> None:
        self.topics: dict[str, list[str]] = {}
        self.subs: dict[str, _Sub] = {}
        self.acked: list[str] = []
        self.published = 0
        self._ids = itertools.count(1)
        self._cond = threading.Condition()
        self._server: grpc.Server | None = None
        self.host = ""

    def start(self) -> str:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        unary = grpc.unary_unary_rpc_method_handler
        publisher = grpc.method_handlers_generic_handler(
            "google.pubsub.v1.Publisher",
            {
                "CreateTopic": unary(self._create_topic, t.Topic.deserialize, t.Topic.serialize),
                "GetTopic": unary(
                    self._get_topic, t.GetTopicRequest.deserialize, t.Topic.serialize
                ),
                "Publish": unary(
                    self._publish, t.PublishRequest.deserialize, t.PublishResponse.serialize
                ),
            },
        )
        subscriber = grpc.method_handlers_generic_handler(
            "google.pubsub.v1.Subscriber",
            {
                "CreateSubscription": unary(
                    self._create_subscription, t.Subscription.deserialize, t.Subscription.serialize
                ),
                "GetSubscription": unary(
                    self._get_subscription,
                    t.GetSubscriptionRequest.deserialize,
                    t.Subscription.serialize,
                ),
                "Acknowledge": unary(
                    self._acknowledge,
                    t.AcknowledgeRequest.deserialize,
                    empty_pb2.Empty.SerializeToString,
                ),
                "ModifyAckDeadline": unary(
                    self._modify,
                    t.ModifyAckDeadlineRequest.deserialize,
                    empty_pb2.Empty.SerializeToString,
                ),
                "StreamingPull": grpc.stream_stream_rpc_method_handler(
                    self._streaming_pull,
                    t.StreamingPullRequest.deserialize,
                    t.StreamingPullResponse.serialize,
                ),
            },
        )
        server.add_generic_rpc_handlers((publisher, subscriber))
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._server = server
        self.host = f"127.0.0.1:{port}"
        return self.host

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=0.5).wait()

    def _create_topic(self, request: t.Topic, context: grpc.ServicerContext) -> t.Topic:
        with self._cond:
            if request.name in self.topics:
                context.abort(grpc.StatusCode.ALREADY_EXISTS, "Topic already exists")
            self.topics[request.name] = []
        return request

    def _get_topic(self, request: t.GetTopicRequest, context: grpc.ServicerContext) -> t.Topic:
        if request.topic not in self.topics:
            context.abort(grpc.StatusCode.NOT_FOUND, "no such topic")
        return t.Topic(name=request.topic)

    def _publish(
        self, request: t.PublishRequest, context: grpc.ServicerContext
    ) -> t.PublishResponse:
        ids = []
        with self._cond:
            if request.topic not in self.topics:
                context.abort(grpc.StatusCode.NOT_FOUND, "no such topic")
            now = timestamp_pb2.Timestamp()
            now.GetCurrentTime()
            for message in request.messages:
                message_id = str(next(self._ids))
                ids.append(message_id)
                for name in self.topics[request.topic]:
                    copy = t.PubsubMessage(
                        data=message.data,
                        attributes=dict(message.attributes),
                        message_id=message_id,
                        publish_time=now,
                    )
                    self.subs[name].ready.append(copy)
            self.published += len(ids)
            self._cond.notify_all()
        return t.PublishResponse(message_ids=ids)

    def _create_subscription(
        self, request: t.Subscription, context: grpc.ServicerContext
    ) -> t.Subscription:
        with self._cond:
            if request.name in self.subs:
                context.abort(grpc.StatusCode.ALREADY_EXISTS, "Subscription already exists")
            if request.topic not in self.topics:
                context.abort(grpc.StatusCode.NOT_FOUND, "Topic not found")
            if request.ack_deadline_seconds == 0:
                request.ack_deadline_seconds = 10  # the service's default
            self.subs[request.name] = _Sub(request.topic, request)
            self.topics[request.topic].append(request.name)
        return request

    def _get_subscription(
        self, request: t.GetSubscriptionRequest, context: grpc.ServicerContext
    ) -> t.Subscription:
        sub = self.subs.get(request.subscription)
        if sub is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "no such subscription")
        return sub.spec

    def _ack(self, ack_ids: list[str]) -> None:
        with self._cond:
            for ack_id in ack_ids:
                name, _, _ = ack_id.partition("|")
                sub = self.subs.get(name)
                if sub is not None and ack_id in sub.outstanding:
                    self.acked.append(sub.outstanding.pop(ack_id).message_id)

    def _nack(self, ack_ids: list[str]) -> None:
        with self._cond:
            for ack_id in ack_ids:
                name, _, _ = ack_id.partition("|")
                sub = self.subs.get(name)
                if sub is not None and ack_id in sub.outstanding:
                    sub.ready.appendleft(sub.outstanding.pop(ack_id))
            self._cond.notify_all()

    def _acknowledge(self, request: t.AcknowledgeRequest, context: Any) -> empty_pb2.Empty:
        self._ack(list(request.ack_ids))
        return empty_pb2.Empty()

    def _modify(self, request: t.ModifyAckDeadlineRequest, context: Any) -> empty_pb2.Empty:
        if request.ack_deadline_seconds == 0:
            self._nack(list(request.ack_ids))
        return empty_pb2.Empty()

    def _streaming_pull(
        self, requests: Iterator[t.StreamingPullRequest], context: grpc.ServicerContext
    ) -> Iterator[t.StreamingPullResponse]:
        first = next(requests)
        name = first.subscription
        sub = self.subs.get(name)
        if sub is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "no such subscription")
        mine: set[str] = set()
        closed = threading.Event()

        def read_requests() -> None:
            try:
                for request in requests:
                    self._ack(list(request.ack_ids))
                    zero = [
                        a
                        for a, s in zip(
                            request.modify_deadline_ack_ids,
                            request.modify_deadline_seconds,
                            strict=False,
                        )
                        if s == 0
                    ]
                    self._nack(zero)
            except grpc.RpcError:
                pass
            finally:
                closed.set()

        threading.Thread(target=read_requests, daemon=True).start()
        try:
            while context.is_active() and not closed.is_set():
                with self._cond:
                    if not sub.ready:
                        self._cond.wait(0.1)
                    batch = []
                    while sub.ready and len(batch) < 500:
                        message = sub.ready.popleft()
                        ack_id = f"{name}|{message.message_id}|{time.monotonic_ns()}"
                        sub.outstanding[ack_id] = message
                        sub.attempts[message.message_id] = (
                            sub.attempts.get(message.message_id, 0) + 1
                        )
                        mine.add(ack_id)
                        batch.append(
                            t.ReceivedMessage(
                                ack_id=ack_id,
                                message=message,
                                delivery_attempt=sub.attempts[message.message_id],
                            )
                        )
                if batch:
                    yield t.StreamingPullResponse(received_messages=batch)
        finally:
            self._nack([a for a in mine if a in sub.outstanding])
