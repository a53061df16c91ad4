"""Presentation contexts as users build them (router.net.presentation)."""

from __future__ import annotations

import pytest
from pydicom.uid import UID

from router.net.codes import ContextResult
from router.net.pdu_items import RoleSelection
from router.net.presentation import (
    DEFAULT_TRANSFER_SYNTAXES,
    PresentationContext,
    VerificationPresentationContexts,
    build_context,
    build_role,
    uid_name,
)

VERIFICATION = "1.2.840.10008.1.1"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
DEFLATED = "1.2.840.10008.1.2.1.99"
BIG_ENDIAN = "1.2.840.10008.1.2.2"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"

INVALID_UIDS = ["", "1.2.", ".1.2", "1..2", "1.2.a", "1.2 .3", "1.2.3\n", "1." + "2" * 63, "1." * 40_000]
SENT_IN_THE_WILD = "1.2.840.113619.4.030"  # a leading zero: not conformant, but real peers send such UIDs


def test_default_transfer_syntaxes_are_the_four_uncompressed_ones_in_order():
    assert DEFAULT_TRANSFER_SYNTAXES == (IMPLICIT, EXPLICIT, DEFLATED, BIG_ENDIAN)


def test_build_context_uses_the_default_transfer_syntaxes():
    context = build_context(VERIFICATION)
    assert context.abstract_syntax == VERIFICATION
    assert context.transfer_syntax == [IMPLICIT, EXPLICIT, DEFLATED, BIG_ENDIAN]
    assert context.context_id is None
    assert (context.scu_role, context.scp_role) == (None, None)
    assert context.result is None


def test_default_transfer_syntax_lists_are_not_shared():
    first, second = build_context(VERIFICATION), build_context(VERIFICATION)
    first.transfer_syntax.append(JPEG_BASELINE)
    assert second.transfer_syntax == list(DEFAULT_TRANSFER_SYNTAXES)
    assert PresentationContext(VERIFICATION).transfer_syntax == list(DEFAULT_TRANSFER_SYNTAXES)


def test_build_context_with_a_single_transfer_syntax_str():
    assert build_context(CT_IMAGE_STORAGE, EXPLICIT).transfer_syntax == [EXPLICIT]


def test_build_context_with_a_list_keeps_order_and_drops_duplicates():
    context = build_context(CT_IMAGE_STORAGE, [BIG_ENDIAN, IMPLICIT, BIG_ENDIAN])
    assert context.transfer_syntax == [BIG_ENDIAN, IMPLICIT]


def test_build_context_accepts_pydicom_uids_and_bytes():
    context = build_context(UID(CT_IMAGE_STORAGE), [UID(IMPLICIT), EXPLICIT.encode()])
    assert context.abstract_syntax == CT_IMAGE_STORAGE
    assert context.transfer_syntax == [IMPLICIT, EXPLICIT]
    assert build_context(VERIFICATION.encode() + b"\0").abstract_syntax == VERIFICATION


def test_build_context_from_a_context_copies_its_abstract_syntax_only():
    original = build_context(CT_IMAGE_STORAGE, JPEG_BASELINE)
    copy = build_context(original)
    assert copy is not original
    assert copy.abstract_syntax == CT_IMAGE_STORAGE
    assert copy.transfer_syntax == list(DEFAULT_TRANSFER_SYNTAXES)


@pytest.mark.parametrize("uid", INVALID_UIDS)
def test_invalid_abstract_syntax_raises(uid):
    with pytest.raises(ValueError, match="abstract syntax"):
        build_context(uid)


@pytest.mark.parametrize("uid", INVALID_UIDS)
def test_invalid_transfer_syntax_raises(uid):
    with pytest.raises(ValueError, match="transfer syntax"):
        build_context(VERIFICATION, [IMPLICIT, uid])


def test_a_uid_with_a_leading_zero_is_tolerated_as_pynetdicom_does():
    assert build_context(SENT_IN_THE_WILD, [IMPLICIT]).abstract_syntax == SENT_IN_THE_WILD


def test_add_transfer_syntax_appends_once():
    context = build_context(CT_IMAGE_STORAGE, IMPLICIT)
    context.add_transfer_syntax(JPEG_BASELINE)
    context.add_transfer_syntax(IMPLICIT)
    assert context.transfer_syntax == [IMPLICIT, JPEG_BASELINE]
    with pytest.raises(ValueError):
        context.add_transfer_syntax("not a uid")


def test_status_and_accepted_follow_the_result():
    context = build_context(VERIFICATION)
    assert context.status == "Pending"
    assert not context.accepted
    expected = {
        ContextResult.ACCEPTANCE: "Accepted",
        ContextResult.USER_REJECTION: "User Rejected",
        ContextResult.NO_REASON: "Provider Rejected",
        ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED: "Abstract Syntax Not Supported",
        ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED: "Transfer Syntax(es) Not Supported",
    }
    for result, text in expected.items():
        context.result = result
        assert context.status == text
        assert context.accepted is (result == ContextResult.ACCEPTANCE)
    context.result = ContextResult(9)
    assert context.status == "Rejected (9)"


def test_str_lists_the_names_like_the_seed_document():
    text = str(build_context(VERIFICATION))
    assert text.splitlines() == [
        "Abstract Syntax: Verification SOP Class",
        "Transfer Syntax(es):",
        "    =Implicit VR Little Endian",
        "    =Explicit VR Little Endian",
        "    =Deflated Explicit VR Little Endian",
        "    =Explicit VR Big Endian",
    ]


def test_str_shows_id_and_result_once_negotiated():
    context = PresentationContext(CT_IMAGE_STORAGE, [EXPLICIT], context_id=3)
    context.result = ContextResult.ACCEPTANCE
    assert str(context).splitlines() == [
        "ID: 3",
        "Abstract Syntax: CT Image Storage",
        "Transfer Syntax(es):",
        "    =Explicit VR Little Endian",
        "Result: Accepted",
    ]


def test_str_falls_back_to_the_uid_for_unknown_syntaxes():
    text = str(build_context("1.2.3.4", "1.2.3.4.5"))
    assert "Abstract Syntax: 1.2.3.4" in text
    assert "    =1.2.3.4.5" in text


def test_uid_name():
    assert uid_name(VERIFICATION) == "Verification SOP Class"
    assert uid_name(IMPLICIT) == "Implicit VR Little Endian"
    assert uid_name("1.2.3.4") == "1.2.3.4"


def test_build_role_returns_a_role_selection_item():
    role = build_role(CT_IMAGE_STORAGE, scp_role=True)
    assert isinstance(role, RoleSelection)
    assert role == RoleSelection(CT_IMAGE_STORAGE, False, True)
    assert build_role(CT_IMAGE_STORAGE) == RoleSelection(CT_IMAGE_STORAGE, False, False)
    assert build_role(CT_IMAGE_STORAGE, scu_role=True, scp_role=True) == RoleSelection(CT_IMAGE_STORAGE, True, True)
    assert build_role(UID(CT_IMAGE_STORAGE), scu_role=1).scu_role is True


def test_build_role_rejects_an_invalid_uid():
    with pytest.raises(ValueError, match="SOP class"):
        build_role("1.2.x", scp_role=True)


def test_verification_presentation_contexts():
    assert len(VerificationPresentationContexts) == 1
    (context,) = VerificationPresentationContexts
    assert context.abstract_syntax == VERIFICATION
    assert context.transfer_syntax == list(DEFAULT_TRANSFER_SYNTAXES)
    assert context.context_id is None
