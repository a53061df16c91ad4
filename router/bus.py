"""The bus: the messages listeners send workers, their msgpack encoding, and the ZeroMQ endpoints.

Every message is a frozen dataclass with a `KIND` and a schema `VERSION`; on
the wire it is a msgpack array `[kind, version, {field: value}]`, so a reader
can refuse what it does not know with a clear error instead of misreading it.
A message whose version is newer than ours is refused; unknown fields of a
known version are ignored (a newer sender may add optional fields). A sender
may send several messages as the frames of one multipart ZeroMQ message (a
batch: one hop through ZeroMQ instead of one per message); each frame is one
message, so a reader that takes frames one by one reads a batch as well.

Topology: each worker binds a PULL socket at its own endpoint; every listener
connects a PUSH socket to all of them, and ZeroMQ spreads the messages among
the workers that are up. A worker that records jobs of a lane another worker
delivers (see `workers.shares`) tells that worker with a `JobsWaiting` on its
endpoint. By default the endpoints are `ipc://` files under the
spool (`bus/worker-N`); with `bus: tcp://HOST:PORT` in the config worker N
binds PORT + N, so workers can run on other hosts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import msgpack
import zmq

MESSAGE_HIGH_WATER_MARK = 100_000  # messages queued per peer before a send blocks


class BusError(ValueError):
    """A bus message that cannot be read."""


@dataclass(frozen=True)
class InstanceAccepted:
    """A listener accepted an instance: it is durable in the spool as `name` and waits for routing."""

    KIND: ClassVar[str] = "instance-accepted"
    VERSION: ClassVar[int] = 1

    name: str  # the file under the spool's incoming/ directory
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    calling_ae: str
    called_ae: str
    peer_address: str
    size: int
    accepted_at: float  # UNIX time the Success response was sent


@dataclass(frozen=True)
class JobsWaiting:
    """A worker recorded jobs of a lane that another worker delivers (the receiver's threads claim them now)."""

    KIND: ClassVar[str] = "jobs-waiting"
    VERSION: ClassVar[int] = 1

    destination: str
    kind: str  # a `workers.jobs.JobKind` value


MESSAGE_TYPES: dict[str, type] = {message.KIND: message for message in (InstanceAccepted, JobsWaiting)}


@cache
def field_names(message_type: type) -> tuple[str, ...]:
    """The fields of a message type, in order (its fields are plain values: no nested dataclasses)."""
    return tuple(field.name for field in dataclasses.fields(message_type))


def encode(message: Any) -> bytes:
    """The wire form of a bus message."""
    fields = {name: getattr(message, name) for name in field_names(type(message))}
    return msgpack.packb([message.KIND, message.VERSION, fields], use_bin_type=True)


def decode(data: bytes) -> Any:
    """The message in `data`; BusError if it is not one we can read."""
    try:
        kind, version, fields = msgpack.unpackb(data, raw=False)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise BusError(f"not a bus message: {exc}") from None
    message_type = MESSAGE_TYPES.get(kind)
    if message_type is None:
        raise BusError(f"unknown bus message kind {kind!r}")
    if not isinstance(version, int) or version > message_type.VERSION:
        raise BusError(f"{kind} version {version!r} is newer than this router reads ({message_type.VERSION})")
    if not isinstance(fields, dict):
        raise BusError(f"{kind}: the fields are not a map")
    names = field_names(message_type)
    try:
        return message_type(**{key: value for key, value in fields.items() if key in names})
    except TypeError as exc:
        raise BusError(f"{kind}: {exc}") from None


def worker_endpoints(spool_bus: Path, bus: str | None, workers: int) -> list[str]:
    """The endpoint each worker binds, in worker order."""
    if bus is None:
        return [f"ipc://{spool_bus / f'worker-{index}'}" for index in range(workers)]
    base, _, port = bus.rpartition(":")
    return [f"{base}:{int(port) + index}" for index in range(workers)]


def connect_endpoint(endpoint: str) -> str:
    """The address a sender connects to for an endpoint a worker binds (0.0.0.0 means this host)."""
    return endpoint.replace("tcp://0.0.0.0:", "tcp://127.0.0.1:").replace("tcp://*:", "tcp://127.0.0.1:")


def sender(context: zmq.Context, endpoints: list[str]) -> zmq.Socket:
    """A PUSH socket connected to every worker endpoint."""
    socket = context.socket(zmq.PUSH)
    socket.setsockopt(zmq.SNDHWM, MESSAGE_HIGH_WATER_MARK)
    socket.setsockopt(zmq.LINGER, 2000)
    for endpoint in endpoints:
        socket.connect(connect_endpoint(endpoint))
    return socket


def receiver(context: zmq.Context, endpoint: str) -> zmq.Socket:
    """A PULL socket bound at one worker's endpoint."""
    socket = context.socket(zmq.PULL)
    socket.setsockopt(zmq.RCVHWM, MESSAGE_HIGH_WATER_MARK)
    socket.bind(endpoint)
    return socket
