"""Presentation contexts as users build them: `PresentationContext`, `build_context`, `build_role`.

This module owns the user-facing description of a presentation context (an
abstract syntax, its transfer syntaxes, the SCP/SCU roles and, once negotiated,
the result), the default transfer syntaxes, UID naming, the prebuilt
`VerificationPresentationContexts`, and the contexts that carry an instance
through unchanged where the peer allows it (`sendable_syntaxes`,
`pass_through_contexts`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from pydicom.uid import UID

from router.net.codes import ContextResult
from router.net.pdu_items import RoleSelection
from router.net.values import validate_uid

VERIFICATION_SOP_CLASS = "1.2.840.10008.1.1"
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"
UNCOMPRESSED_LITTLE_ENDIAN = (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN)  # what a decoded data set goes in

DEFAULT_TRANSFER_SYNTAXES: tuple[str, ...] = (
    IMPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
)

_RESULT_TEXT = {
    ContextResult.ACCEPTANCE: "Accepted",
    ContextResult.USER_REJECTION: "User Rejected",
    ContextResult.NO_REASON: "Provider Rejected",
    ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED: "Abstract Syntax Not Supported",
    ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED: "Transfer Syntax(es) Not Supported",
}


def uid_name(uid: str) -> str:
    """The UID's registered name (e.g. 'Verification SOP Class'), or the UID itself."""
    name = UID(uid).name
    return name if name else uid


@dataclass(eq=False)
class PresentationContext:
    """One presentation context: proposed, supported, or negotiated.

    `scu_role`/`scp_role` are None when no SCP/SCU role selection is proposed
    or supported for the abstract syntax. After negotiation `result` is set,
    `transfer_syntax` holds the single accepted syntax, and `as_scu`/`as_scp`
    say which roles this side may play on the context.
    """

    abstract_syntax: str
    transfer_syntax: list[str] = field(default_factory=lambda: list(DEFAULT_TRANSFER_SYNTAXES))
    context_id: int | None = None
    scu_role: bool | None = None
    scp_role: bool | None = None
    result: ContextResult | None = None
    as_scu: bool | None = None
    as_scp: bool | None = None

    def __post_init__(self) -> None:
        self.abstract_syntax = validate_uid(self.abstract_syntax, "abstract syntax")
        syntaxes = [self.transfer_syntax] if isinstance(self.transfer_syntax, (str, bytes)) else self.transfer_syntax
        self.transfer_syntax = []
        for syntax in syntaxes:
            self.add_transfer_syntax(syntax)

    def add_transfer_syntax(self, syntax: str | bytes) -> None:
        """Append a transfer syntax, ignoring one already present."""
        syntax = validate_uid(syntax, "transfer syntax")
        if syntax not in self.transfer_syntax:
            self.transfer_syntax.append(syntax)

    @property
    def status(self) -> str:
        """The negotiation outcome in words: 'Accepted', 'Pending' before negotiation, ..."""
        if self.result is None:
            return "Pending"
        return _RESULT_TEXT.get(self.result, f"Rejected ({int(self.result)})")

    @property
    def accepted(self) -> bool:
        """True if the context was negotiated and accepted."""
        return self.result == ContextResult.ACCEPTANCE

    def __str__(self) -> str:
        lines = []
        if self.context_id is not None:
            lines.append(f"ID: {self.context_id}")
        lines.append(f"Abstract Syntax: {uid_name(self.abstract_syntax)}")
        lines.append("Transfer Syntax(es):")
        lines.extend(f"    ={uid_name(syntax)}" for syntax in self.transfer_syntax)
        if self.result is not None:
            lines.append(f"Result: {self.status}")
        return "\n".join(lines)


def build_context(
    abstract_syntax: str | bytes | PresentationContext,
    transfer_syntax: str | bytes | Iterable[str] | None = None,
) -> PresentationContext:
    """A new context for `abstract_syntax`; the default transfer syntaxes when none are given."""
    if isinstance(abstract_syntax, PresentationContext):
        abstract_syntax = abstract_syntax.abstract_syntax
    if transfer_syntax is None:
        syntaxes: list = list(DEFAULT_TRANSFER_SYNTAXES)
    elif isinstance(transfer_syntax, (str, bytes)):
        syntaxes = [transfer_syntax]
    else:
        syntaxes = list(transfer_syntax)
    return PresentationContext(abstract_syntax, syntaxes)


def build_role(sop_class_uid: str | bytes, scu_role: bool = False, scp_role: bool = False) -> RoleSelection:
    """An SCP/SCU Role Selection item for `associate(ext_neg=...)`."""
    return RoleSelection(validate_uid(sop_class_uid, "SOP class"), bool(scu_role), bool(scp_role))


VerificationPresentationContexts: list[PresentationContext] = [build_context(VERIFICATION_SOP_CLASS)]


def sendable_syntaxes(own: str) -> tuple[str, ...]:
    """The syntaxes a data set encoded in `own` may be sent in: `own` first, then, if it is a known
    syntax that is not encapsulated (pydicom decodes it and encodes it again without loss), the
    uncompressed little endian ones. Compressed data is only ever sent as it is."""
    syntax = UID(own)
    if not syntax.is_transfer_syntax or syntax.is_encapsulated:
        return (own,)
    return (own, *(other for other in UNCOMPRESSED_LITTLE_ENDIAN if other != own))


def pass_through_contexts(sop_class_uid: str, syntaxes: tuple[str, ...]) -> list[PresentationContext]:
    """Contexts for an instance that may go in `syntaxes` (its own first): the own syntax in a context
    of its own, since an acceptor picks within one context by its own preference and would have the
    data re-encoded, then one context with the others."""
    own = build_context(sop_class_uid, [syntaxes[0]])
    return [own, build_context(sop_class_uid, list(syntaxes[1:]))] if syntaxes[1:] else [own]
