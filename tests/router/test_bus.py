"""Bus messages: byte-exact msgpack encoding, refusing what cannot be read, and real PUSH/PULL hops (one message, a batch)."""

from __future__ import annotations

import dataclasses

import msgpack
import pytest
import zmq

from router.bus import BusError, InstanceAccepted, decode, encode, receiver, sender, worker_endpoints

MESSAGE = InstanceAccepted(
    name="1.2.3.abc.dcm", sop_class_uid="1.2.840.10008.5.1.4.1.1.2", sop_instance_uid="1.2.3",
    transfer_syntax="1.2.840.10008.1.2.1", calling_ae="CT1", called_ae="ROUTER", peer_address="127.0.0.1",
    size=1234, accepted_at=1.5,
)


def test_wire_form_is_kind_version_fields():
    wire = encode(MESSAGE)
    assert wire[:20] == b"\x93\xb1instance-accepted\x01"
    kind, version, fields = msgpack.unpackb(wire)
    assert (kind, version, fields["size"], fields["name"]) == ("instance-accepted", 1, 1234, "1.2.3.abc.dcm")
    assert decode(wire) == MESSAGE


def test_unknown_fields_of_a_known_version_are_ignored():
    kind, version, fields = msgpack.unpackb(encode(MESSAGE))
    fields["added_later"] = "x"
    assert decode(msgpack.packb([kind, version, fields])) == MESSAGE


@pytest.mark.parametrize(
    "wire, reason",
    [
        (b"\xc1", "not a bus message"),
        (msgpack.packb(["nope", 1, {}]), "unknown bus message kind 'nope'"),
        (msgpack.packb(["instance-accepted", 9, {}]), "version 9 is newer"),
        (msgpack.packb(["instance-accepted", 1, []]), "the fields are not a map"),
        (msgpack.packb(["instance-accepted", 1, {"name": "x"}]), "missing"),
        (msgpack.packb([1, 2]), "not a bus message"),
    ],
)
def test_unreadable_messages_are_refused_with_a_reason(wire, reason):
    with pytest.raises(BusError, match=reason):
        decode(wire)


def test_endpoints(tmp_path):
    assert worker_endpoints(tmp_path, None, 2) == [f"ipc://{tmp_path}/worker-0", f"ipc://{tmp_path}/worker-1"]
    assert worker_endpoints(tmp_path, "tcp://0.0.0.0:5555", 2) == ["tcp://0.0.0.0:5555", "tcp://0.0.0.0:5556"]


def test_a_message_crosses_an_ipc_endpoint(tmp_path):
    context = zmq.Context()
    endpoint = worker_endpoints(tmp_path, None, 1)[0]
    pull = receiver(context, endpoint)
    push = sender(context, [endpoint])
    try:
        push.send(encode(MESSAGE))
        assert pull.poll(5000)
        assert decode(pull.recv()) == MESSAGE
    finally:
        push.close(0)
        pull.close(0)
        context.term()


def test_a_batch_is_one_multipart_message_whose_frames_read_one_by_one(tmp_path):
    context = zmq.Context()
    endpoint = worker_endpoints(tmp_path, None, 1)[0]
    pull = receiver(context, endpoint)
    push = sender(context, [endpoint])
    batch = [MESSAGE, dataclasses.replace(MESSAGE, name="1.2.4.def.dcm", sop_instance_uid="1.2.4")]
    try:
        push.send_multipart([encode(message) for message in batch])
        assert pull.poll(5000)
        assert [decode(frame) for frame in pull.recv_multipart()] == batch  # as a worker takes it
        push.send_multipart([encode(message) for message in batch])
        assert pull.poll(5000)
        assert [decode(pull.recv()), decode(pull.recv())] == batch  # as a reader of single frames takes it
    finally:
        push.close(0)
        pull.close(0)
        context.term()
