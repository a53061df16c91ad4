"""Association negotiation (ACSE) as pure functions, shared by requestors and acceptors.

`negotiate` turns a received A-ASSOCIATE-RQ and the acceptor's `AcceptorPolicy`
into the A-ASSOCIATE-AC or -RJ to send plus the negotiated contexts.
`build_request` and `contexts_from_accept` do the requestor's half: propose
contexts with odd IDs, then read the acceptor's answer. No I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from router.net.codes import APPLICATION_CONTEXT_NAME, ContextResult, PresentationRejectReason
from router.net.codes import RejectResult, RejectSource, UserRejectReason
from router.net.pdu import AssociateAC, AssociateRJ, AssociateRQ
from router.net.pdu_items import ImplementationClassUID, ImplementationVersionName, MaximumLength
from router.net.pdu_items import PresentationContextAC, PresentationContextRQ, RoleSelection
from router.net.pdu_items import UserInformation
from router.net.presentation import PresentationContext
from router.net.sop_class import may_be_storage
from router.net.values import is_uid

MAX_CONTEXTS = 128
NO_TRANSFER_SYNTAX = ""


@dataclass(frozen=True)
class Implementation:
    """What a side says about itself in every A-ASSOCIATE-RQ/AC."""

    class_uid: str
    version_name: str | None
    max_pdu: int

    def user_items(self) -> list:
        """The Maximum Length and implementation sub-items."""
        items: list = [MaximumLength(self.max_pdu), ImplementationClassUID(self.class_uid)]
        if self.version_name:
            items.append(ImplementationVersionName(self.version_name))
        return items


@dataclass(frozen=True)
class AcceptorPolicy:
    """Everything an acceptor decides an A-ASSOCIATE-RQ by."""

    ae_title: str
    contexts: Sequence[PresentationContext]
    implementation: Implementation
    require_called_aet: bool = False
    require_calling_aet: Sequence[str] = ()
    at_association_limit: bool = False
    extra_user_items: Sequence = field(default_factory=tuple)  # e.g. a User Identity AC
    prefer_proposed_syntax: bool = False  # pick the requestor's first syntax we support, not ours
    # Syntaxes in which a SOP class none of `contexts` names is accepted if it may be a Storage class
    # (private, or newer than our table: `may_be_storage`); empty: such classes are refused.
    unlisted_storage_syntaxes: Sequence[str] = ()


@dataclass(frozen=True)
class Negotiation:
    """The outcome of `negotiate`: the PDU to send and, if accepted, the contexts."""

    reply: AssociateAC | AssociateRJ
    contexts: list[PresentationContext]


def refusal(request: AssociateRQ, policy: AcceptorPolicy) -> AssociateRJ | None:
    """The A-ASSOCIATE-RJ the policy demands for `request`, or None if it may go on."""
    permanent, user = RejectResult.PERMANENT, RejectSource.SERVICE_USER
    if policy.at_association_limit:
        return AssociateRJ(
            RejectResult.TRANSIENT,
            RejectSource.SERVICE_PROVIDER_PRESENTATION,
            PresentationRejectReason.LOCAL_LIMIT_EXCEEDED,
        )
    if policy.require_called_aet and request.called_ae_title.strip() != policy.ae_title.strip():
        return AssociateRJ(permanent, user, UserRejectReason.CALLED_AE_NOT_RECOGNIZED)
    allowed = [title.strip() for title in policy.require_calling_aet]
    if allowed and request.calling_ae_title.strip() not in allowed:
        return AssociateRJ(permanent, user, UserRejectReason.CALLING_AE_NOT_RECOGNIZED)
    if request.application_context != APPLICATION_CONTEXT_NAME:
        return AssociateRJ(permanent, user, UserRejectReason.APPLICATION_CONTEXT_NOT_SUPPORTED)
    return None


def negotiate(request: AssociateRQ, policy: AcceptorPolicy) -> Negotiation:
    """Decide an A-ASSOCIATE-RQ: reject it, or accept it with a result per context."""
    reject = refusal(request, policy)
    if reject is not None:
        return Negotiation(reject, [])
    proposed_roles = {item.sop_class_uid: item for item in request.user_information.role_selections}
    supported: dict[str, PresentationContext] = {}
    for context in policy.contexts:
        supported.setdefault(context.abstract_syntax, context)  # the first one listed wins
    contexts, replies = [], []
    for item in request.presentation_contexts:
        if not is_uid(item.abstract_syntax):  # nothing we could support, and no context of ours can name it
            replies.append(PresentationContextAC(item.context_id, ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED, NO_TRANSFER_SYNTAX))
            continue
        if item.abstract_syntax not in supported and policy.unlisted_storage_syntaxes and may_be_storage(item.abstract_syntax):
            supported[item.abstract_syntax] = PresentationContext(item.abstract_syntax, policy.unlisted_storage_syntaxes)
        context = _negotiate_context(item, supported, proposed_roles, policy.prefer_proposed_syntax)
        contexts.append(context)
        replies.append(_ac_item(context))
    reply = AssociateAC(
        called_ae_title=request.called_ae_title,
        calling_ae_title=request.calling_ae_title,
        presentation_contexts=tuple(replies),
        user_information=UserInformation(
            tuple(policy.implementation.user_items())
            + tuple(_role_replies(contexts, proposed_roles))
            + tuple(policy.extra_user_items)
        ),
    )
    return Negotiation(reply, contexts)


def _negotiate_context(
    item: PresentationContextRQ,
    supported: dict[str, PresentationContext],
    proposed_roles: dict[str, RoleSelection],
    prefer_proposed_syntax: bool = False,
) -> PresentationContext:
    result = PresentationContext(item.abstract_syntax, [], context_id=item.context_id)
    ours = supported.get(item.abstract_syntax)
    if ours is None:
        result.result = ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED
        return result
    if prefer_proposed_syntax:
        chosen = next((ts for ts in item.transfer_syntaxes if ts in ours.transfer_syntax), None)
    else:
        chosen = next((ts for ts in ours.transfer_syntax if ts in item.transfer_syntaxes), None)
    if chosen is None:
        result.result = ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED
        return result
    result.transfer_syntax = [chosen]
    proposal = proposed_roles.get(item.abstract_syntax)
    if proposal is None or ours.scu_role is None and ours.scp_role is None:
        # Default roles: the requestor is the SCU, we are the SCP.
        result.as_scu, result.as_scp = False, True
    else:
        result.scu_role = bool(proposal.scu_role and ours.scu_role)
        result.scp_role = bool(proposal.scp_role and ours.scp_role)
        # Roles are named from the requestor's side: its SCP role is our SCU role.
        result.as_scu, result.as_scp = result.scp_role, result.scu_role
        if not (result.scu_role or result.scp_role):
            result.result = ContextResult.USER_REJECTION
            return result
    result.result = ContextResult.ACCEPTANCE
    return result


def _ac_item(context: PresentationContext) -> PresentationContextAC:
    syntax = context.transfer_syntax[0] if context.transfer_syntax else NO_TRANSFER_SYNTAX
    result = ContextResult.NO_REASON if context.result is None else context.result
    return PresentationContextAC(context.context_id or 0, result, syntax)


def _role_replies(contexts: list[PresentationContext], proposed: dict[str, RoleSelection]) -> list[RoleSelection]:
    replies: dict[str, RoleSelection] = {}
    for context in contexts:
        if context.abstract_syntax in proposed and context.scu_role is not None:
            replies[context.abstract_syntax] = RoleSelection(
                context.abstract_syntax, bool(context.scu_role), bool(context.scp_role)
            )
    return list(replies.values())


def build_request(
    called_ae_title: str,
    calling_ae_title: str,
    contexts: Sequence[PresentationContext],
    implementation: Implementation,
    ext_neg: Sequence = (),
) -> tuple[AssociateRQ, list[PresentationContext]]:
    """The A-ASSOCIATE-RQ proposing `contexts` with IDs 1, 3, 5, ...; and the contexts so numbered."""
    if not contexts:
        raise ValueError("At least one presentation context must be requested")
    if len(contexts) > MAX_CONTEXTS:
        raise ValueError(f"At most {MAX_CONTEXTS} presentation contexts may be requested, not {len(contexts)}")
    numbered = []
    for index, context in enumerate(contexts):
        copy = PresentationContext(context.abstract_syntax, list(context.transfer_syntax), context_id=2 * index + 1)
        copy.scu_role, copy.scp_role = context.scu_role, context.scp_role
        numbered.append(copy)
    items = tuple(PresentationContextRQ(c.context_id, c.abstract_syntax, tuple(c.transfer_syntax)) for c in numbered)
    request = AssociateRQ(
        called_ae_title=called_ae_title,
        calling_ae_title=calling_ae_title,
        presentation_contexts=items,
        user_information=UserInformation(tuple(implementation.user_items()) + tuple(ext_neg)),
    )
    return request, numbered


def contexts_from_accept(
    proposed: list[PresentationContext], accept: AssociateAC, ext_neg: Sequence = ()
) -> list[PresentationContext]:
    """The proposed contexts with the acceptor's results, transfer syntax and roles filled in."""
    by_id = {item.context_id: item for item in accept.presentation_contexts}
    asked = {item.sop_class_uid: item for item in ext_neg if isinstance(item, RoleSelection)}
    answered = {item.sop_class_uid: item for item in accept.user_information.role_selections}
    negotiated = []
    for context in proposed:
        result = PresentationContext(context.abstract_syntax, list(context.transfer_syntax), context.context_id)
        reply = by_id.get(context.context_id)
        result.result = reply.result if reply is not None else ContextResult.NO_REASON
        if result.accepted:
            result.transfer_syntax = [reply.transfer_syntax]  # type: ignore[union-attr]
        _apply_roles(result, asked.get(context.abstract_syntax), answered.get(context.abstract_syntax))
        negotiated.append(result)
    return negotiated


def _apply_roles(context: PresentationContext, asked: RoleSelection | None, answer: RoleSelection | None) -> None:
    if asked is None or answer is None:
        context.as_scu, context.as_scp = True, False
        return
    # The acceptor may not grant a role that was not proposed.
    context.scu_role = asked.scu_role and answer.scu_role
    context.scp_role = asked.scp_role and answer.scp_role
    context.as_scu, context.as_scp = context.scu_role, context.scp_role
