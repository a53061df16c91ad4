"""Prebuilt context lists and accept-all storage (router.net.contexts), checked against pynetdicom's lists."""

from __future__ import annotations

import pytest
from pydicom.uid import UID, UID_dictionary

import router.net
from router.net import AE, contexts, presentation, sop_class
from router.net.acse import MAX_CONTEXTS, AcceptorPolicy, Implementation, build_request, negotiate
from router.net.codes import ContextResult
from router.net.contexts import (
    ALL_TRANSFER_SYNTAXES,
    AllStoragePresentationContexts,
    BasicWorklistManagementPresentationContexts,
    QueryRetrievePresentationContexts,
    StorageCommitmentPresentationContexts,
    StoragePresentationContexts,
    VerificationPresentationContexts,
    accept_all_storage,
    all_storage_contexts,
)
from router.net.pdu_items import RoleSelection
from router.net.presentation import DEFAULT_TRANSFER_SYNTAXES, build_context

PYNETDICOM_STORAGE_COUNT = 120
ROOM_LEFT = MAX_CONTEXTS - PYNETDICOM_STORAGE_COUNT
JPEG_2000_LOSSLESS = "1.2.840.10008.1.2.4.90"
JPEG_2000 = "1.2.840.10008.1.2.4.91"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
IMPLEMENTATION = Implementation("1.2.3.4.5", "CONTEXTS_TEST", 16382)

# Reference document section 5.2, plus the newer syntaxes: all must be accepted.
COMPRESSED_SYNTAXES = {
    "1.2.840.10008.1.2.1.99": "Deflated Explicit VR Little Endian",
    "1.2.840.10008.1.2.4.50": "JPEG Baseline (Process 1)",
    "1.2.840.10008.1.2.4.51": "JPEG Extended (Processes 2 & 4)",
    "1.2.840.10008.1.2.4.57": "JPEG Lossless, Non-Hierarchical (Process 14)",
    "1.2.840.10008.1.2.4.70": "JPEG Lossless, SV1",
    "1.2.840.10008.1.2.4.80": "JPEG-LS Lossless",
    "1.2.840.10008.1.2.4.81": "JPEG-LS Near-Lossless",
    "1.2.840.10008.1.2.4.90": "JPEG 2000 (Lossless Only)",
    "1.2.840.10008.1.2.4.91": "JPEG 2000",
    "1.2.840.10008.1.2.4.92": "JPEG 2000 Part 2 Multi-component (Lossless Only)",
    "1.2.840.10008.1.2.4.93": "JPEG 2000 Part 2 Multi-component",
    "1.2.840.10008.1.2.4.201": "HTJ2K (Lossless Only)",
    "1.2.840.10008.1.2.4.202": "HTJ2K with RPCL Options (Lossless Only)",
    "1.2.840.10008.1.2.4.203": "HTJ2K",
    "1.2.840.10008.1.2.5": "RLE Lossless",
    "1.2.840.10008.1.2.4.100": "MPEG2 MP@ML",
    "1.2.840.10008.1.2.4.102": "MPEG-4 AVC/H.264 HP@L4.1",
    "1.2.840.10008.1.2.4.103": "MPEG-4 AVC/H.264 BD-compatible",
    "1.2.840.10008.1.2.4.107": "HEVC/H.265 Main Profile",
    "1.2.840.10008.1.2.4.108": "HEVC/H.265 Main 10 Profile",
    "1.2.840.10008.1.2.4.110": "JPEG XL Lossless",
    "1.2.840.10008.1.2.4.112": "JPEG XL",
    "1.2.840.10008.1.2.8.1": "Deflated Image Frame Compression",
}


@pytest.fixture
def pynetdicom_presentation():
    """pynetdicom's prebuilt lists (pynetdicom is a test peer only, never imported by the engine)."""
    return pytest.importorskip("pynetdicom.presentation")


def uids(context_list) -> list[str]:
    return [str(context.abstract_syntax) for context in context_list]


def propose(ae: AE, *proposed, roles=()):
    """Negotiate an A-ASSOCIATE-RQ proposing `proposed` contexts against `ae`'s supported ones."""
    request, _ = build_request("SCP", "SCU", list(proposed), IMPLEMENTATION, ext_neg=roles)
    return negotiate(request, AcceptorPolicy("SCP", ae.supported_contexts, IMPLEMENTATION)).contexts


def test_storage_contexts_are_pynetdicoms_120_uid_for_uid_in_order(pynetdicom_presentation):
    assert len(StoragePresentationContexts) == PYNETDICOM_STORAGE_COUNT
    assert uids(StoragePresentationContexts) == uids(pynetdicom_presentation.StoragePresentationContexts)


def test_storage_contexts_use_the_default_transfer_syntaxes():
    for context in StoragePresentationContexts:
        assert context.transfer_syntax == list(DEFAULT_TRANSFER_SYNTAXES)
        assert sop_class.is_storage(context.abstract_syntax)


def test_eight_more_requested_contexts_fit_and_a_ninth_does_not():
    ae = AE()
    ae.requested_contexts = StoragePresentationContexts
    for _ in range(ROOM_LEFT):
        ae.add_requested_context(sop_class.Verification)
    assert len(ae.requested_contexts) == MAX_CONTEXTS
    with pytest.raises(ValueError, match=str(MAX_CONTEXTS)):
        ae.add_requested_context(sop_class.Verification)


def test_all_storage_contexts_cover_every_storage_class_and_pynetdicoms(pynetdicom_presentation):
    assert uids(AllStoragePresentationContexts) == list(sop_class.STORAGE_SOP_CLASSES)
    assert set(uids(pynetdicom_presentation.AllStoragePresentationContexts)) <= set(
        uids(AllStoragePresentationContexts)
    )
    assert set(uids(StoragePresentationContexts)) <= set(uids(AllStoragePresentationContexts))
    assert len(AllStoragePresentationContexts) > MAX_CONTEXTS  # for acceptors: too many to request


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (QueryRetrievePresentationContexts, "QueryRetrievePresentationContexts"),
        (StorageCommitmentPresentationContexts, "StorageCommitmentPresentationContexts"),
        (BasicWorklistManagementPresentationContexts, "BasicWorklistManagementPresentationContexts"),
        (VerificationPresentationContexts, "VerificationPresentationContexts"),
    ],
)
def test_service_lists_equal_pynetdicoms(ours, theirs, pynetdicom_presentation):
    assert uids(ours) == uids(getattr(pynetdicom_presentation, theirs))


def test_query_retrieve_contexts_hold_every_qr_class():
    assert set(sop_class.QR_SOP_CLASSES) <= set(uids(QueryRetrievePresentationContexts))


def test_verification_contexts_are_the_presentation_modules_list():
    assert VerificationPresentationContexts is presentation.VerificationPresentationContexts


def test_package_exports_the_lists():
    for name in contexts.__all__:
        assert getattr(router.net, name) is getattr(contexts, name), name
        assert name in router.net.__all__


def test_all_transfer_syntaxes_are_unique_valid_uids_defaults_first():
    assert len(set(ALL_TRANSFER_SYNTAXES)) == len(ALL_TRANSFER_SYNTAXES)
    assert all(isinstance(uid, UID) and uid.is_valid for uid in ALL_TRANSFER_SYNTAXES)
    assert ALL_TRANSFER_SYNTAXES[: len(DEFAULT_TRANSFER_SYNTAXES)] == DEFAULT_TRANSFER_SYNTAXES


def test_all_transfer_syntaxes_hold_every_one_pydicom_knows():
    known = {uid for uid, entry in UID_dictionary.items() if entry[1] == "Transfer Syntax"}
    assert known <= set(ALL_TRANSFER_SYNTAXES)


@pytest.mark.parametrize("syntax", COMPRESSED_SYNTAXES)
def test_compressed_syntaxes_are_included(syntax):
    assert syntax in ALL_TRANSFER_SYNTAXES


def test_all_storage_contexts_offer_every_syntax_and_are_fresh():
    first, second = all_storage_contexts(), all_storage_contexts()
    assert uids(first) == list(sop_class.STORAGE_SOP_CLASSES)
    assert all(context.transfer_syntax == list(ALL_TRANSFER_SYNTAXES) for context in first)
    assert all((context.scu_role, context.scp_role) == (None, None) for context in first)
    first[0].transfer_syntax.clear()
    assert second[0].transfer_syntax == list(ALL_TRANSFER_SYNTAXES)


def test_all_storage_contexts_with_chosen_syntaxes_and_roles():
    chosen = all_storage_contexts([JPEG_2000], scu_role=False, scp_role=True)
    assert all(context.transfer_syntax == [JPEG_2000] for context in chosen)
    assert all((context.scu_role, context.scp_role) == (False, True) for context in chosen)


def test_accept_all_storage_supports_every_class_in_every_syntax():
    ae = AE()
    accept_all_storage(ae)
    supported = ae.supported_contexts
    assert sorted(uids(supported)) == sorted(sop_class.STORAGE_SOP_CLASSES)
    assert all(context.transfer_syntax == list(ALL_TRANSFER_SYNTAXES) for context in supported)


def test_accept_all_storage_merges_with_contexts_already_supported():
    ae = AE()
    ae.add_supported_context(sop_class.Verification)
    ae.add_supported_context(sop_class.CTImageStorage, JPEG_2000)
    accept_all_storage(ae)
    by_uid = {context.abstract_syntax: context for context in ae.supported_contexts}
    assert len(by_uid) == len(sop_class.STORAGE_SOP_CLASSES) + 1
    assert set(by_uid[sop_class.CTImageStorage].transfer_syntax) == set(ALL_TRANSFER_SYNTAXES)


@pytest.mark.parametrize("syntax", [JPEG_2000_LOSSLESS, JPEG_2000])
def test_an_accept_all_ae_accepts_a_jpeg_2000_ct_context(syntax):
    ae = AE()
    accept_all_storage(ae)
    (result,) = propose(ae, build_context(sop_class.CTImageStorage, syntax))
    assert result.result == ContextResult.ACCEPTANCE
    assert result.transfer_syntax == [syntax]
    assert (result.as_scu, result.as_scp) == (False, True)


@pytest.mark.parametrize("syntax", list(COMPRESSED_SYNTAXES))
def test_an_accept_all_ae_accepts_each_compressed_syntax_alone(syntax):
    ae = AE()
    accept_all_storage(ae)
    (result,) = propose(ae, build_context(sop_class.EnhancedMRImageStorage, syntax))
    assert result.accepted and result.transfer_syntax == [syntax]


def test_an_accept_all_ae_still_refuses_non_storage_classes():
    ae = AE()
    accept_all_storage(ae)
    (result,) = propose(ae, build_context(sop_class.StudyRootQueryRetrieveInformationModelFind))
    assert result.result == ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED


def test_accept_all_storage_with_roles_grants_the_scp_role_for_c_get():
    ae = AE()
    accept_all_storage(ae, scu_role=True, scp_role=True)
    proposal = build_context(sop_class.CTImageStorage, EXPLICIT_VR_LITTLE_ENDIAN)
    role = RoleSelection(sop_class.CTImageStorage, scu_role=False, scp_role=True)
    (result,) = propose(ae, proposal, roles=(role,))
    assert result.accepted
    assert (result.scu_role, result.scp_role) == (False, True)
    assert (result.as_scu, result.as_scp) == (True, False)
