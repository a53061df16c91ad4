"""Property tests of the PDU codec: round trips, and hostile input never escapes as an exception."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.net.codes import (
    AbortReason, AbortSource, ContextResult, ItemType, RejectResult, RejectSource,
    UserIdentityType, reject_reason_enum,
)  # fmt: skip
from router.net.errors import PduError, PduTooLarge
from router.net.pdu import (
    HEADER_LENGTH, INCOMPLETE, PDV, Abort, AssociateAC, AssociateRJ, AssociateRQ, Decoded, PDataTF,
    ReleaseRP, ReleaseRQ, decode, encode, read_header,
)  # fmt: skip
from router.net.pdu_items import (
    AsyncOperationsWindow, ImplementationClassUID, ImplementationVersionName, MaximumLength,
    PresentationContextAC, PresentationContextRQ, RoleSelection, SOPClassCommonExtended,
    SOPClassExtended, UnknownItem, UserIdentityAC, UserIdentityRQ, UserInformation,
)  # fmt: skip

BOUNDED = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BYTE = st.integers(0, 0xFF)
U16 = st.integers(0, 0xFFFF)
SUB_ITEM_TYPES = set(range(ItemType.MAXIMUM_LENGTH, ItemType.USER_IDENTITY_AC + 1))

uids = st.lists(st.integers(0, 99999), min_size=1, max_size=8).map(lambda n: ".".join(map(str, n)))
names = st.text(st.characters(min_codepoint=ord("!"), max_codepoint=ord("~")), max_size=16)
ae_titles = st.text(st.characters(min_codepoint=ord(" "), max_codepoint=ord("~")), max_size=16).map(
    str.strip
)
context_ids = st.integers(0, 127).map(lambda n: 2 * n + 1)
small_bytes = st.binary(max_size=40)


def unknown_items(known: set[int]) -> st.SearchStrategy[UnknownItem]:
    return st.builds(UnknownItem, BYTE.filter(lambda t: t not in known), small_bytes)


sub_items = st.one_of(
    st.builds(MaximumLength, st.integers(0, 0xFFFFFFFF)),
    st.builds(ImplementationClassUID, uids),
    st.builds(ImplementationVersionName, names),
    st.builds(AsyncOperationsWindow, U16, U16),
    st.builds(RoleSelection, uids, st.booleans(), st.booleans()),
    st.builds(SOPClassExtended, uids, small_bytes),
    st.builds(SOPClassCommonExtended, uids, uids, st.lists(uids, max_size=3).map(tuple)),
    st.builds(UserIdentityRQ, BYTE.map(UserIdentityType), st.booleans(), small_bytes, small_bytes),
    st.builds(UserIdentityAC, small_bytes),
    unknown_items(SUB_ITEM_TYPES),
)
# Encoding sorts sub-items by type (stably), so generate them in that order to compare objects.
user_information = st.lists(sub_items, max_size=8).map(
    lambda items: UserInformation(tuple(sorted(items, key=lambda item: item.item_type)))
)


def sorted_unknown(known: set[int]) -> st.SearchStrategy[tuple[UnknownItem, ...]]:
    items = st.lists(unknown_items(known), max_size=3)
    return items.map(lambda found: tuple(sorted(found, key=lambda item: item.item_type)))


BOTH_ITEMS = {ItemType.APPLICATION_CONTEXT, ItemType.USER_INFORMATION}
RQ_ITEMS = BOTH_ITEMS | {ItemType.PRESENTATION_CONTEXT_RQ}
AC_ITEMS = BOTH_ITEMS | {ItemType.PRESENTATION_CONTEXT_AC}
contexts_rq = st.builds(
    PresentationContextRQ, context_ids, uids, st.lists(uids, max_size=4).map(tuple)
)
rejections = st.integers(1, 0xFF).map(ContextResult)
contexts_ac = st.one_of(
    st.builds(PresentationContextAC, context_ids, st.just(ContextResult.ACCEPTANCE), uids),
    st.builds(PresentationContextAC, context_ids, rejections, uids | st.just("")),
)
associate_rq = st.builds(
    AssociateRQ, ae_titles, ae_titles, st.lists(contexts_rq, min_size=1, max_size=5).map(tuple),
    user_information, uids, U16, sorted_unknown(RQ_ITEMS),
)  # fmt: skip
associate_ac = st.builds(
    AssociateAC, ae_titles, ae_titles, st.lists(contexts_ac, min_size=1, max_size=5).map(tuple),
    user_information, uids, U16, sorted_unknown(AC_ITEMS),
)  # fmt: skip
associate_rj = st.builds(
    lambda result, source, reason: AssociateRJ(RejectResult(result), RejectSource(source), reason),
    BYTE, BYTE, BYTE,
)  # fmt: skip
pdvs = st.builds(PDV, context_ids, st.booleans(), st.booleans(), st.binary(max_size=64))
pdata = st.lists(pdvs, min_size=1, max_size=5).map(lambda found: PDataTF(tuple(found)))
aborts = st.builds(
    lambda source, reason: Abort(AbortSource(source), AbortReason(reason)), BYTE, BYTE
)
releases = st.sampled_from([ReleaseRQ(), ReleaseRP()])
any_pdu = st.one_of(associate_rq, associate_ac, associate_rj, pdata, releases, aborts)


@BOUNDED
@given(any_pdu)
def test_decode_inverts_encode(pdu):
    data = encode(pdu)
    assert decode(data, 0) == Decoded(pdu, len(data))
    assert encode(decode(data, 0).pdu) == data
    assert decode(data + b"\x05\x00", 0) == Decoded(pdu, len(data))  # trailing bytes are left alone


@BOUNDED
@given(associate_rj)
def test_reject_reason_typed_by_its_source(reject):
    typed = decode(encode(reject), 0).pdu.reason
    assert typed == reject.reason
    assert type(typed) is type(reject_reason_enum(reject.source, reject.reason))


def check_outcome(buf: bytes, max_pdata: int) -> None:
    """decode returns INCOMPLETE, Decoded or PduError; what it decodes can be encoded again."""
    result = decode(buf, max_pdata)
    assert result is INCOMPLETE or isinstance(result, (Decoded, PduError))
    if result is INCOMPLETE:
        assert len(buf) < HEADER_LENGTH + (read_header(buf)[1] if len(buf) >= HEADER_LENGTH else 0)
    if isinstance(result, Decoded):
        assert HEADER_LENGTH <= result.size <= len(buf)
        if isinstance(result.pdu, PDataTF) and max_pdata:
            assert sum(len(pdv.data) for pdv in result.pdu.pdvs) <= max_pdata
        again = encode(result.pdu)  # canonical form: items sorted, padding and flags normalised
        assert encode(decode(again, 0).pdu) == again


@BOUNDED
@given(st.binary(max_size=300), st.integers(0, 400))
def test_random_bytes_never_raise(buf, max_pdata):
    check_outcome(buf, max_pdata)


@BOUNDED
@given(st.integers(1, 7), st.binary(max_size=200), st.integers(0, 300))
def test_random_bodies_with_a_valid_header_never_raise(pdu_type, body, max_pdata):
    check_outcome(bytes([pdu_type, 0]) + len(body).to_bytes(4, "big") + body, max_pdata)


def flip(data: bytearray, pos: int, value: int) -> None:
    data[pos % len(data)] ^= value or 1


def insert(data: bytearray, pos: int, value: int) -> None:
    data.insert(pos % (len(data) + 1), value)


def delete(data: bytearray, pos: int, value: int) -> None:
    del data[pos % len(data)]


def truncate(data: bytearray, pos: int, value: int) -> None:
    del data[pos % len(data) :]


def huge_u16(data: bytearray, pos: int, value: int) -> None:
    pos %= len(data)
    data[pos : pos + 2] = b"\xff\xff"


def huge_u32(data: bytearray, pos: int, value: int) -> None:
    pos %= len(data)
    data[pos : pos + 4] = b"\xff\xff\xff\xff"


def grow_length(data: bytearray, pos: int, value: int) -> None:
    length = (int.from_bytes(data[2:6], "big") + value) % (1 << 32)
    data[2:6] = length.to_bytes(4, "big")


MUTATIONS = (flip, insert, delete, truncate, huge_u16, huge_u32, grow_length)
mutation = st.tuples(st.sampled_from(MUTATIONS), st.integers(0, 10_000), BYTE)
mutations = st.lists(mutation, min_size=1, max_size=4)


@BOUNDED
@given(any_pdu, mutations, st.integers(0, 300))
def test_mutated_pdus_never_raise(pdu, changes, max_pdata):
    data = bytearray(encode(pdu))
    for mutate, pos, value in changes:
        if data:
            mutate(data, pos, value)
    check_outcome(bytes(data), max_pdata)


@BOUNDED
@given(pdata, st.integers(1, 400))
def test_pdata_never_exceeds_the_announced_maximum(pdu, max_pdata):
    data = encode(pdu)
    if len(data) - HEADER_LENGTH <= max_pdata:
        assert decode(data, max_pdata) == Decoded(pdu, len(data))
        return
    for available in (data, data[:HEADER_LENGTH]):  # refused from the header alone
        result = decode(available, max_pdata)
        assert isinstance(result, PduTooLarge)
        assert (result.length, result.maximum) == (len(data) - HEADER_LENGTH, max_pdata)
