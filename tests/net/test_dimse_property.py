"""Property tests of the DIMSE message layer: round trips, and hostile input never raising."""

from __future__ import annotations

import dataclasses
import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.filereader import read_dataset

from router.net.codes import PDV_HEADER_LENGTH
from router.net.dimse import (
    DEFAULT_PDU_LENGTH,
    MIN_PDU_LENGTH,
    AssembledMessage,
    MessageAssembler,
    fragment,
)
from router.net.dimse_messages import (
    FIELDS,
    MESSAGE_TYPES,
    CEchoRQ,
    CStoreRQ,
    DecodedCommand,
    DimseMessage,
    Priority,
    command_dataset,
    decode_command,
    encode_command,
)
from router.net.errors import DimseError
from router.net.pdu import PDV

BOUNDED = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

_PRINTABLE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "\\")
_UID = st.lists(st.integers(0, 10**6), min_size=1, max_size=8).map(
    lambda parts: ".".join(map(str, parts))
)


def _text(max_size: int) -> st.SearchStrategy[str]:
    """Default-repertoire text as it survives a round trip: no edge spaces, not empty."""
    return st.text(_PRINTABLE, min_size=1, max_size=max_size).map(str.strip).filter(bool)


_BY_VR = {
    "UI": _UID,
    "AE": _text(16),
    "LO": _text(64),
    "US": st.integers(0, 0xFFFF),
    "AT": st.lists(st.integers(0, 0xFFFFFFFF), min_size=1, max_size=6).map(tuple),
}


def _value(name: str) -> st.SearchStrategy[object]:
    if name == "priority":
        return st.sampled_from(Priority)
    return _BY_VR[FIELDS[name].tag.vr]


def _message_of(cls: type[DimseMessage]) -> st.SearchStrategy[DimseMessage]:
    """Any valid instance of `cls`: required fields set, optional ones present or absent."""
    strategies = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        value = _value(field.name)
        if field.name not in cls.required:
            value = st.one_of(st.just(field.default), value)
        strategies[field.name] = value
    return st.builds(cls, **strategies)


MESSAGES = st.sampled_from(sorted(MESSAGE_TYPES.values(), key=lambda c: c.__name__)).flatmap(
    _message_of
)


@BOUNDED
@given(MESSAGES, st.booleans())
def test_every_message_type_round_trips(message, has_dataset):
    encoded = encode_command(message, has_dataset)
    assert decode_command(encoded) == DecodedCommand(message, has_dataset)
    assert len(encoded) % 2 == 0
    assert int.from_bytes(encoded[8:12], "little") == len(encoded) - 12


@BOUNDED
@given(MESSAGES, st.booleans())
def test_pydicom_reads_every_message_as_we_describe_it(message, has_dataset):
    read = read_dataset(io.BytesIO(encode_command(message, has_dataset)), True, True)
    assert read[0x00000001:] == command_dataset(message, has_dataset)


@BOUNDED
@given(st.binary(max_size=300))
def test_random_bytes_never_raise(data):
    assert isinstance(decode_command(data), (DecodedCommand, DimseError))


@st.composite
def _mutated_commands(draw: st.DrawFn) -> bytes:
    data = bytearray(encode_command(draw(MESSAGES), draw(st.booleans())))
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["replace", "insert", "delete", "truncate"]))
        if action == "replace" and position < len(data):
            data[position] = draw(st.integers(0, 0xFF))
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=12))
        elif action == "delete":
            del data[position : position + draw(st.integers(1, 12))]
        else:
            del data[position:]
    return bytes(data)


@BOUNDED
@given(_mutated_commands())
def test_mutated_command_sets_never_raise(data):
    result = decode_command(data)
    assert isinstance(result, (DecodedCommand, DimseError))
    if isinstance(result, DecodedCommand):  # whatever decodes encodes again
        assert decode_command(encode_command(result.message, result.has_dataset)) == result


_MAX_PDUS = st.one_of(st.just(0), st.integers(MIN_PDU_LENGTH, 20_000))


@BOUNDED
@given(MESSAGES, st.one_of(st.none(), st.binary(max_size=3000)), _MAX_PDUS, st.data())
def test_fragment_then_reassemble_round_trips(message, raw, max_pdu, data):
    dataset = None if raw is None else raw + b"\x00" * (len(raw) % 2)
    if dataset is not None and data.draw(st.booleans()):
        dataset = dataset * data.draw(st.integers(1, 8))  # sometimes many PDUs
    context_id = data.draw(st.integers(0, 127)) * 2 + 1
    command = encode_command(message, dataset is not None)
    pdus = list(fragment(context_id, command, dataset, max_pdu))
    assembler = MessageAssembler()
    results = []
    for pdu in pdus:
        assert sum(PDV_HEADER_LENGTH + len(p.data) for p in pdu.pdvs) <= (
            max_pdu or DEFAULT_PDU_LENGTH
        )
        for pdv in pdu.pdvs:
            assert len(pdv.data) % 2 == 0
            results.append(assembler.feed(pdv))
    assert results[:-1] == [None] * (len(results) - 1)
    assert results[-1] == AssembledMessage(context_id, message, dataset)


_FRAGMENT_POOL = st.sampled_from(
    [
        encode_command(CEchoRQ(1), False),
        encode_command(CStoreRQ(2, "1.2", "1.2.3"), True),
        b"",
        b"\x00\x00",
    ]
)
_PDVS = st.lists(
    st.builds(
        PDV,
        st.sampled_from([1, 3]),
        st.booleans(),
        st.booleans(),
        st.one_of(_FRAGMENT_POOL, st.binary(max_size=40)),
    ),
    max_size=12,
)


@settings(BOUNDED, suppress_health_check=list(HealthCheck))
@given(_PDVS)
def test_assembler_never_raises_on_any_pdv_sequence(pdvs):
    assembler = MessageAssembler()
    for pdv in pdvs:
        result = assembler.feed(pdv)
        assert result is None or isinstance(result, (AssembledMessage, DimseError))
