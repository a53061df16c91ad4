"""Association negotiation as pure functions (router.net.acse): no sockets, exact reply PDUs."""

from __future__ import annotations

import pytest

from router.net.acse import (
    MAX_CONTEXTS,
    AcceptorPolicy,
    Implementation,
    Negotiation,
    build_request,
    contexts_from_accept,
    negotiate,
    refusal,
)
from router.net.codes import (
    APPLICATION_CONTEXT_NAME,
    ContextResult,
    PresentationRejectReason,
    RejectResult,
    RejectSource,
    UserIdentityType,
    UserRejectReason,
)
from router.net.pdu import AssociateAC, AssociateRJ, AssociateRQ, decode, encode
from router.net.pdu_items import (
    AsyncOperationsWindow,
    ImplementationClassUID,
    ImplementationVersionName,
    MaximumLength,
    PresentationContextAC,
    PresentationContextRQ,
    RoleSelection,
    UserIdentityAC,
    UserIdentityRQ,
    UserInformation,
)
from router.net.presentation import PresentationContext, build_context

VERIFICATION = "1.2.840.10008.1.1"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
BIG_ENDIAN = "1.2.840.10008.1.2.2"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"

OUR_UID = "1.2.3.4.5"
OUR_VERSION = "OURS_1"
THEIR_UID = "1.2.826.0.1.3680043.9.3811.2.0.0"
OUR_IMPLEMENTATION = Implementation(OUR_UID, OUR_VERSION, 32768)
THEIR_IMPLEMENTATION = Implementation(THEIR_UID, "PYNETDICOM_200", 16382)
OUR_USER_ITEMS = (MaximumLength(32768), ImplementationClassUID(OUR_UID), ImplementationVersionName(OUR_VERSION))


def request_for(*contexts: tuple[int, str, tuple[str, ...]], roles=(), calling="SCU", called="SCP", app=APPLICATION_CONTEXT_NAME):
    """An A-ASSOCIATE-RQ with the given (id, abstract syntax, transfer syntaxes) contexts."""
    items = tuple(PresentationContextRQ(cid, abstract, tuple(syntaxes)) for cid, abstract, syntaxes in contexts)
    user = UserInformation(tuple(THEIR_IMPLEMENTATION.user_items()) + tuple(roles))
    return AssociateRQ(called, calling, items, user, application_context=app)


def policy_for(*contexts: PresentationContext, **options) -> AcceptorPolicy:
    return AcceptorPolicy(ae_title="SCP", contexts=list(contexts), implementation=OUR_IMPLEMENTATION, **options)


def supported(abstract, syntaxes=None, scu_role=None, scp_role=None) -> PresentationContext:
    context = build_context(abstract, syntaxes)
    context.scu_role, context.scp_role = scu_role, scp_role
    return context


def expected_accept(request: AssociateRQ, *items: PresentationContextAC, extra=()) -> AssociateAC:
    return AssociateAC(
        called_ae_title=request.called_ae_title,
        calling_ae_title=request.calling_ae_title,
        presentation_contexts=tuple(items),
        user_information=UserInformation(OUR_USER_ITEMS + tuple(extra)),
    )


# ---- acceptance and per-context results ---------------------------------------------------------


def test_acceptance_picks_the_acceptors_preferred_syntax_among_the_proposed_ones():
    request = request_for((1, CT_IMAGE_STORAGE, (IMPLICIT, EXPLICIT, BIG_ENDIAN)))
    policy = policy_for(supported(CT_IMAGE_STORAGE, [JPEG_BASELINE, BIG_ENDIAN, EXPLICIT, IMPLICIT]))
    outcome = negotiate(request, policy)
    assert isinstance(outcome, Negotiation)
    assert outcome.reply == expected_accept(request, PresentationContextAC(1, ContextResult.ACCEPTANCE, BIG_ENDIAN))
    (context,) = outcome.contexts
    assert context.context_id == 1
    assert context.abstract_syntax == CT_IMAGE_STORAGE
    assert context.transfer_syntax == [BIG_ENDIAN]
    assert context.result == ContextResult.ACCEPTANCE and context.accepted
    # Default roles: the requestor is SCU, we (the acceptor) are SCP.
    assert (context.as_scu, context.as_scp) == (False, True)
    assert (context.scu_role, context.scp_role) == (None, None)


def test_the_requestors_order_does_not_matter():
    request = request_for((1, VERIFICATION, (BIG_ENDIAN, IMPLICIT)))
    outcome = negotiate(request, policy_for(supported(VERIFICATION, [IMPLICIT, BIG_ENDIAN])))
    assert outcome.reply.presentation_contexts == (PresentationContextAC(1, ContextResult.ACCEPTANCE, IMPLICIT),)


def test_abstract_syntax_not_supported_is_result_3():
    request = request_for((1, MR_IMAGE_STORAGE, (IMPLICIT,)))
    outcome = negotiate(request, policy_for(supported(VERIFICATION)))
    assert outcome.reply == expected_accept(request, PresentationContextAC(1, ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED, ""))
    assert int(outcome.reply.presentation_contexts[0].result) == 3
    assert outcome.contexts[0].result == ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED
    assert outcome.contexts[0].transfer_syntax == []


def test_transfer_syntaxes_not_supported_is_result_4():
    request = request_for((1, CT_IMAGE_STORAGE, (JPEG_BASELINE,)))
    outcome = negotiate(request, policy_for(supported(CT_IMAGE_STORAGE, [IMPLICIT, EXPLICIT])))
    assert outcome.reply == expected_accept(request, PresentationContextAC(1, ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED, ""))
    assert int(outcome.reply.presentation_contexts[0].result) == 4
    assert not outcome.contexts[0].accepted


def test_several_contexts_with_mixed_results_keep_the_proposed_order():
    request = request_for(
        (1, VERIFICATION, (EXPLICIT, IMPLICIT)),
        (3, MR_IMAGE_STORAGE, (IMPLICIT,)),
        (5, CT_IMAGE_STORAGE, (JPEG_BASELINE,)),
        (7, CT_IMAGE_STORAGE, (IMPLICIT, EXPLICIT)),
    )
    policy = policy_for(supported(VERIFICATION), supported(CT_IMAGE_STORAGE, [EXPLICIT, IMPLICIT]))
    outcome = negotiate(request, policy)
    assert outcome.reply == expected_accept(
        request,
        PresentationContextAC(1, ContextResult.ACCEPTANCE, IMPLICIT),
        PresentationContextAC(3, ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED, ""),
        PresentationContextAC(5, ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED, ""),
        PresentationContextAC(7, ContextResult.ACCEPTANCE, EXPLICIT),
    )
    assert [c.context_id for c in outcome.contexts] == [1, 3, 5, 7]
    assert [c.accepted for c in outcome.contexts] == [True, False, False, True]


def test_the_reply_round_trips_on_the_wire():
    request = request_for((1, VERIFICATION, (IMPLICIT,)), (3, MR_IMAGE_STORAGE, (IMPLICIT,)))
    reply = negotiate(request, policy_for(supported(VERIFICATION))).reply
    decoded = decode(encode(reply), 0)
    assert decoded.pdu == reply


def test_max_pdu_and_implementation_in_the_user_information():
    request = request_for((1, VERIFICATION, (IMPLICIT,)))
    policy = AcceptorPolicy("SCP", [supported(VERIFICATION)], Implementation("1.2.3", "VERSION_16_CHARS", 0))
    info = negotiate(request, policy).reply.user_information
    assert info.maximum_length == 0
    assert info.implementation_class_uid == "1.2.3"
    assert info.implementation_version_name == "VERSION_16_CHARS"


def test_no_version_name_item_without_a_version_name():
    request = request_for((1, VERIFICATION, (IMPLICIT,)))
    policy = AcceptorPolicy("SCP", [supported(VERIFICATION)], Implementation("1.2.3", None, 16382))
    info = negotiate(request, policy).reply.user_information
    assert info.items == (MaximumLength(16382), ImplementationClassUID("1.2.3"))


def test_extra_user_items_are_appended_after_ours():
    request = request_for((1, VERIFICATION, (IMPLICIT,)))
    extra = (AsyncOperationsWindow(1, 1), UserIdentityAC(b"token"))
    outcome = negotiate(request, policy_for(supported(VERIFICATION), extra_user_items=extra))
    assert outcome.reply.user_information.items == OUR_USER_ITEMS + extra


# ---- SCP/SCU role selection ----------------------------------------------------------------------


def test_proposed_scp_role_is_granted_when_we_support_it():
    request = request_for((1, CT_IMAGE_STORAGE, (IMPLICIT,)), roles=[RoleSelection(CT_IMAGE_STORAGE, False, True)])
    policy = policy_for(supported(CT_IMAGE_STORAGE, IMPLICIT, scu_role=False, scp_role=True))
    outcome = negotiate(request, policy)
    assert outcome.reply == expected_accept(
        request,
        PresentationContextAC(1, ContextResult.ACCEPTANCE, IMPLICIT),
        extra=[RoleSelection(CT_IMAGE_STORAGE, False, True)],
    )
    (context,) = outcome.contexts
    assert (context.scu_role, context.scp_role) == (False, True)
    # Their SCP role is our SCU role.
    assert (context.as_scu, context.as_scp) == (True, False)


def test_both_roles_granted_when_both_proposed_and_supported():
    request = request_for((1, CT_IMAGE_STORAGE, (IMPLICIT,)), roles=[RoleSelection(CT_IMAGE_STORAGE, True, True)])
    policy = policy_for(supported(CT_IMAGE_STORAGE, IMPLICIT, scu_role=True, scp_role=True))
    outcome = negotiate(request, policy)
    assert outcome.reply.user_information.role_selections == (RoleSelection(CT_IMAGE_STORAGE, True, True),)
    assert (outcome.contexts[0].as_scu, outcome.contexts[0].as_scp) == (True, True)


def test_proposed_scp_role_is_refused_when_we_do_not_support_it():
    request = request_for((1, CT_IMAGE_STORAGE, (IMPLICIT,)), roles=[RoleSelection(CT_IMAGE_STORAGE, True, True)])
    policy = policy_for(supported(CT_IMAGE_STORAGE, IMPLICIT, scu_role=True, scp_role=False))
    outcome = negotiate(request, policy)
    assert outcome.reply == expected_accept(
        request,
        PresentationContextAC(1, ContextResult.ACCEPTANCE, IMPLICIT),
        extra=[RoleSelection(CT_IMAGE_STORAGE, True, False)],
    )
    assert (outcome.contexts[0].as_scu, outcome.contexts[0].as_scp) == (False, True)


def test_a_role_not_proposed_is_never_granted():
    request = request_for((1, CT_IMAGE_STORAGE, (IMPLICIT,)), roles=[RoleSelection(CT_IMAGE_STORAGE, True, False)])
    policy = policy_for(supported(CT_IMAGE_STORAGE, IMPLICIT, scu_role=True, scp_role=True))
    outcome = negotiate(request, policy)
    assert outcome.reply.user_information.role_selections == (RoleSelection(CT_IMAGE_STORAGE, True, False),)
    assert (outcome.contexts[0].as_scu, outcome.contexts[0].as_scp) == (False, True)


def test_role_proposal_with_our_roles_unset_gives_default_roles_and_no_reply_item():
    request = request_for((1, CT_IMAGE_STORAGE, (IMPLICIT,)), roles=[RoleSelection(CT_IMAGE_STORAGE, False, True)])
    outcome = negotiate(request, policy_for(supported(CT_IMAGE_STORAGE, IMPLICIT)))
    assert outcome.reply == expected_accept(request, PresentationContextAC(1, ContextResult.ACCEPTANCE, IMPLICIT))
    assert outcome.reply.user_information.role_selections == ()
    (context,) = outcome.contexts
    assert (context.as_scu, context.as_scp) == (False, True)
    assert (context.scu_role, context.scp_role) == (None, None)


def test_both_roles_refused_is_a_user_rejection():
    request = request_for((1, CT_IMAGE_STORAGE, (IMPLICIT,)), roles=[RoleSelection(CT_IMAGE_STORAGE, True, False)])
    policy = policy_for(supported(CT_IMAGE_STORAGE, IMPLICIT, scu_role=False, scp_role=True))
    outcome = negotiate(request, policy)
    (item,) = outcome.reply.presentation_contexts
    assert item.context_id == 1
    assert item.result == ContextResult.USER_REJECTION and int(item.result) == 1
    assert not outcome.contexts[0].accepted


def test_role_items_for_other_sop_classes_do_not_affect_a_context():
    request = request_for((1, VERIFICATION, (IMPLICIT,)), roles=[RoleSelection(CT_IMAGE_STORAGE, False, True)])
    policy = policy_for(supported(VERIFICATION, scu_role=True, scp_role=True))
    outcome = negotiate(request, policy)
    assert outcome.reply == expected_accept(request, PresentationContextAC(1, ContextResult.ACCEPTANCE, IMPLICIT))


def test_one_role_reply_per_sop_class_even_with_several_contexts():
    request = request_for(
        (1, CT_IMAGE_STORAGE, (IMPLICIT,)),
        (3, CT_IMAGE_STORAGE, (EXPLICIT,)),
        roles=[RoleSelection(CT_IMAGE_STORAGE, True, True)],
    )
    policy = policy_for(supported(CT_IMAGE_STORAGE, [IMPLICIT, EXPLICIT], scu_role=True, scp_role=True))
    outcome = negotiate(request, policy)
    assert outcome.reply.user_information.role_selections == (RoleSelection(CT_IMAGE_STORAGE, True, True),)
    assert [c.accepted for c in outcome.contexts] == [True, True]


# ---- refusal ---------------------------------------------------------------------------------------


def rj(result, source, reason) -> AssociateRJ:
    return AssociateRJ(RejectResult(result), RejectSource(source), reason)


def test_local_limit_is_transient_presentation_2():
    request = request_for((1, VERIFICATION, (IMPLICIT,)))
    outcome = negotiate(request, policy_for(supported(VERIFICATION), at_association_limit=True))
    assert outcome.reply == rj(2, 3, PresentationRejectReason.LOCAL_LIMIT_EXCEEDED)
    assert (int(outcome.reply.result), int(outcome.reply.source), int(outcome.reply.reason)) == (2, 3, 2)
    assert outcome.contexts == []


def test_called_ae_mismatch_is_rejected_only_when_required():
    request = request_for((1, VERIFICATION, (IMPLICIT,)), called="OTHER")
    assert isinstance(negotiate(request, policy_for(supported(VERIFICATION))).reply, AssociateAC)
    outcome = negotiate(request, policy_for(supported(VERIFICATION), require_called_aet=True))
    assert outcome.reply == rj(1, 1, UserRejectReason.CALLED_AE_NOT_RECOGNIZED)
    assert int(outcome.reply.reason) == 7


def test_called_ae_match_passes_when_required():
    request = request_for((1, VERIFICATION, (IMPLICIT,)), called="SCP")
    outcome = negotiate(request, policy_for(supported(VERIFICATION), require_called_aet=True))
    assert isinstance(outcome.reply, AssociateAC)


def test_calling_ae_not_allowed_is_1_1_3():
    request = request_for((1, VERIFICATION, (IMPLICIT,)), calling="INTRUDER")
    outcome = negotiate(request, policy_for(supported(VERIFICATION), require_calling_aet=["FRIEND", "SCU"]))
    assert outcome.reply == rj(1, 1, UserRejectReason.CALLING_AE_NOT_RECOGNIZED)
    assert int(outcome.reply.reason) == 3
    allowed = request_for((1, VERIFICATION, (IMPLICIT,)), calling="FRIEND")
    assert isinstance(negotiate(allowed, policy_for(supported(VERIFICATION), require_calling_aet=["FRIEND"])).reply, AssociateAC)


def test_application_context_not_dicom_is_1_1_2():
    request = request_for((1, VERIFICATION, (IMPLICIT,)), app="1.2.3.4")
    outcome = negotiate(request, policy_for(supported(VERIFICATION)))
    assert outcome.reply == rj(1, 1, UserRejectReason.APPLICATION_CONTEXT_NOT_SUPPORTED)
    assert int(outcome.reply.reason) == 2


def test_refusal_order_limit_then_called_then_calling_then_application_context():
    request = request_for((1, VERIFICATION, (IMPLICIT,)), calling="BAD", called="WRONG", app="1.2.3")
    options = {"require_called_aet": True, "require_calling_aet": ["GOOD"], "at_association_limit": True}
    assert refusal(request, policy_for(**options)) == rj(2, 3, 2)
    options["at_association_limit"] = False
    assert refusal(request, policy_for(**options)) == rj(1, 1, 7)
    options["require_called_aet"] = False
    assert refusal(request, policy_for(**options)) == rj(1, 1, 3)
    options["require_calling_aet"] = []
    assert refusal(request, policy_for(**options)) == rj(1, 1, 2)
    assert refusal(request_for((1, VERIFICATION, (IMPLICIT,))), policy_for(**options)) is None


def test_refused_request_reply_round_trips():
    request = request_for((1, VERIFICATION, (IMPLICIT,)), calling="BAD")
    reply = negotiate(request, policy_for(supported(VERIFICATION), require_calling_aet=["GOOD"])).reply
    assert encode(reply) == bytes([0x03, 0, 0, 0, 0, 4, 0, 1, 1, 3])


# ---- the requestor's half ----------------------------------------------------------------------------


def test_build_request_numbers_contexts_with_odd_ids():
    contexts = [build_context(VERIFICATION), build_context(CT_IMAGE_STORAGE, IMPLICIT), build_context(MR_IMAGE_STORAGE)]
    request, numbered = build_request("SCP", "SCU", contexts, THEIR_IMPLEMENTATION)
    assert [item.context_id for item in request.presentation_contexts] == [1, 3, 5]
    assert [c.context_id for c in numbered] == [1, 3, 5]
    assert request.presentation_contexts[1] == PresentationContextRQ(3, CT_IMAGE_STORAGE, (IMPLICIT,))
    assert (request.called_ae_title, request.calling_ae_title) == ("SCP", "SCU")
    assert request.application_context == APPLICATION_CONTEXT_NAME
    # The caller's contexts are copied, not numbered in place.
    assert all(c.context_id is None for c in contexts)


def test_build_request_user_information_holds_implementation_then_ext_neg():
    identity = UserIdentityRQ(UserIdentityType.USERNAME, True, b"user")
    role = RoleSelection(CT_IMAGE_STORAGE, False, True)
    request, _ = build_request("SCP", "SCU", [build_context(VERIFICATION)], THEIR_IMPLEMENTATION, [role, identity])
    assert request.user_information.items == tuple(THEIR_IMPLEMENTATION.user_items()) + (role, identity)
    assert request.user_information.maximum_length == 16382


def test_build_request_accepts_128_contexts_and_refuses_129():
    contexts = [build_context(VERIFICATION, IMPLICIT) for _ in range(MAX_CONTEXTS)]
    request, numbered = build_request("SCP", "SCU", contexts, THEIR_IMPLEMENTATION)
    assert MAX_CONTEXTS == 128
    assert numbered[-1].context_id == 255
    assert len(request.presentation_contexts) == 128
    with pytest.raises(ValueError, match="128"):
        build_request("SCP", "SCU", contexts + [build_context(VERIFICATION)], THEIR_IMPLEMENTATION)


def test_build_request_needs_a_context():
    with pytest.raises(ValueError):
        build_request("SCP", "SCU", [], THEIR_IMPLEMENTATION)


def accept_of(request: AssociateRQ, *items: PresentationContextAC, roles=()) -> AssociateAC:
    user = UserInformation(tuple(OUR_IMPLEMENTATION.user_items()) + tuple(roles))
    return AssociateAC(request.called_ae_title, request.calling_ae_title, tuple(items), user)


def test_contexts_from_accept_reads_results_and_accepted_syntax():
    contexts = [build_context(VERIFICATION), build_context(CT_IMAGE_STORAGE), build_context(MR_IMAGE_STORAGE)]
    request, proposed = build_request("SCP", "SCU", contexts, THEIR_IMPLEMENTATION)
    accept = accept_of(
        request,
        PresentationContextAC(1, ContextResult.ACCEPTANCE, EXPLICIT),
        PresentationContextAC(3, ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED, ""),
        # no answer at all for context 5
    )
    negotiated = contexts_from_accept(proposed, accept)
    assert [c.context_id for c in negotiated] == [1, 3, 5]
    assert [c.result for c in negotiated] == [
        ContextResult.ACCEPTANCE,
        ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED,
        ContextResult.NO_REASON,
    ]
    assert negotiated[0].transfer_syntax == [EXPLICIT]
    assert negotiated[1].transfer_syntax == list(contexts[1].transfer_syntax)
    # Default roles for the requestor: SCU only.
    assert all((c.as_scu, c.as_scp) == (True, False) for c in negotiated)


def test_contexts_from_accept_grants_roles_only_if_proposed():
    contexts = [build_context(CT_IMAGE_STORAGE, IMPLICIT), build_context(MR_IMAGE_STORAGE, IMPLICIT)]
    asked = [RoleSelection(CT_IMAGE_STORAGE, False, True)]
    request, proposed = build_request("SCP", "SCU", contexts, THEIR_IMPLEMENTATION, asked)
    accept = accept_of(
        request,
        PresentationContextAC(1, ContextResult.ACCEPTANCE, IMPLICIT),
        PresentationContextAC(3, ContextResult.ACCEPTANCE, IMPLICIT),
        # The acceptor grants more than was asked, and answers for a class we never proposed a role for.
        roles=[RoleSelection(CT_IMAGE_STORAGE, True, True), RoleSelection(MR_IMAGE_STORAGE, True, True)],
    )
    ct, mr = contexts_from_accept(proposed, accept, asked)
    assert (ct.scu_role, ct.scp_role) == (False, True)
    assert (ct.as_scu, ct.as_scp) == (False, True)
    assert (mr.as_scu, mr.as_scp) == (True, False)


def test_contexts_from_accept_without_a_role_reply_uses_default_roles():
    contexts = [build_context(CT_IMAGE_STORAGE, IMPLICIT)]
    asked = [RoleSelection(CT_IMAGE_STORAGE, True, True)]
    request, proposed = build_request("SCP", "SCU", contexts, THEIR_IMPLEMENTATION, asked)
    accept = accept_of(request, PresentationContextAC(1, ContextResult.ACCEPTANCE, IMPLICIT))
    (context,) = contexts_from_accept(proposed, accept, asked)
    assert (context.as_scu, context.as_scp) == (True, False)


def test_requestor_and_acceptor_halves_agree():
    """build_request -> negotiate -> contexts_from_accept gives both sides matching roles."""
    asked = [RoleSelection(CT_IMAGE_STORAGE, True, True)]
    contexts = [build_context(VERIFICATION), build_context(CT_IMAGE_STORAGE, [EXPLICIT, IMPLICIT])]
    request, proposed = build_request("SCP", "SCU", contexts, THEIR_IMPLEMENTATION, asked)
    policy = policy_for(supported(VERIFICATION), supported(CT_IMAGE_STORAGE, [IMPLICIT], scu_role=False, scp_role=True))
    outcome = negotiate(request, policy)
    ours = contexts_from_accept(proposed, outcome.reply, asked)
    for requestor_side, acceptor_side in zip(ours, outcome.contexts):
        assert requestor_side.context_id == acceptor_side.context_id
        assert requestor_side.transfer_syntax == acceptor_side.transfer_syntax
        assert (requestor_side.as_scu, requestor_side.as_scp) == (acceptor_side.as_scp, acceptor_side.as_scu)
    assert (ours[1].as_scu, ours[1].as_scp) == (False, True)


def test_the_requestors_first_syntax_wins_when_the_acceptor_prefers_it():
    implementation = Implementation(OUR_UID, None, 16382)
    request, _ = build_request("SCP", "SCU", [build_context(CT_IMAGE_STORAGE, [EXPLICIT, IMPLICIT])], implementation)
    ours = [build_context(CT_IMAGE_STORAGE, [IMPLICIT, EXPLICIT])]
    for prefer, expected in ((False, IMPLICIT), (True, EXPLICIT)):
        policy = AcceptorPolicy("SCP", ours, implementation, prefer_proposed_syntax=prefer)
        outcome = negotiate(request, policy)
        assert isinstance(outcome.reply, AssociateAC)
        assert outcome.contexts[0].transfer_syntax == [expected]


# ---- SOP classes no supported context names -----------------------------------------------------
PRIVATE_STORAGE = "1.2.840.113619.4.030"  # a vendor's class, with the leading zero some send
NEWER_STORAGE = "1.2.840.10008.5.1.4.1.1.999"  # under the storage arc, unknown to our table
UNSUPPORTED_QUERY = "1.2.840.10008.5.1.4.1.2.1.1"  # a standard class outside the storage arc


def test_unlisted_storage_classes_are_accepted_in_the_proposed_syntax_when_asked():
    request = request_for(
        (1, PRIVATE_STORAGE, (JPEG_BASELINE, EXPLICIT)), (3, NEWER_STORAGE, (IMPLICIT,)), (5, UNSUPPORTED_QUERY, (IMPLICIT,))
    )
    policy = policy_for(
        supported(CT_IMAGE_STORAGE), unlisted_storage_syntaxes=[IMPLICIT, EXPLICIT, JPEG_BASELINE],
        prefer_proposed_syntax=True,
    )
    outcome = negotiate(request, policy)
    assert outcome.reply.presentation_contexts == (
        PresentationContextAC(1, ContextResult.ACCEPTANCE, JPEG_BASELINE),
        PresentationContextAC(3, ContextResult.ACCEPTANCE, IMPLICIT),
        PresentationContextAC(5, ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED, ""),
    )
    assert [(c.abstract_syntax, c.as_scp) for c in outcome.contexts[:2]] == [(PRIVATE_STORAGE, True), (NEWER_STORAGE, True)]


def test_unlisted_storage_classes_are_refused_by_default():
    request = request_for((1, PRIVATE_STORAGE, (IMPLICIT,)), (3, NEWER_STORAGE, (IMPLICIT,)))
    outcome = negotiate(request, policy_for(supported(CT_IMAGE_STORAGE)))
    assert [item.result for item in outcome.reply.presentation_contexts] == [ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED] * 2


def test_a_proposed_abstract_syntax_that_is_no_uid_is_refused_and_the_rest_negotiated():
    request = request_for((1, "1.2.x", (IMPLICIT,)), (3, CT_IMAGE_STORAGE, (IMPLICIT,)))
    outcome = negotiate(request, policy_for(supported(CT_IMAGE_STORAGE), unlisted_storage_syntaxes=[IMPLICIT]))
    assert [item.result for item in outcome.reply.presentation_contexts] == [
        ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED, ContextResult.ACCEPTANCE,
    ]
