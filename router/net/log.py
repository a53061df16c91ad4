"""Logging: `debug_logger()` and the human summaries of association PDUs.

Lines read "I: ...", "D: ...", "E: ..." like the troubleshooting section of
the documentation our users know: the A-ASSOCIATE-RQ/AC summaries list the
implementation, titles, max PDU, each context with its roles and syntaxes,
and the extended negotiation.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from router.net.codes import RejectResult, RejectSource, reject_reason_text
from router.net.pdu import AssociateAC, AssociateRJ, AssociateRQ
from router.net.presentation import PresentationContext, uid_name

LOGGER = logging.getLogger("router.net")
_RULE_WIDTH = 76


def debug_logger() -> logging.Logger:
    """Send the engine's log to stderr at DEBUG level as 'L: message' lines."""
    LOGGER.handlers = [handler for handler in LOGGER.handlers if not getattr(handler, "_router_debug", False)]
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname).1s: %(message)s"))
    handler._router_debug = True  # type: ignore[attr-defined]
    LOGGER.addHandler(handler)
    LOGGER.setLevel(logging.DEBUG)
    return LOGGER


def _banner(text: str) -> str:
    return f" {text} ".center(_RULE_WIDTH, "=")


def _role_text(scu: bool | None, scp: bool | None) -> str:
    if scu is None and scp is None:
        return "Default"
    roles = [name for name, flag in (("SCU", scu), ("SCP", scp)) if flag]
    return "/".join(roles) if roles else "N/A"


def _negotiation_lines(user_information, accepted: bool) -> list[str]:
    verb = "Accepted" if accepted else "Requested"
    extended = user_information.sop_class_extended
    lines = [f"{verb} Extended Negotiation:" + (" None" if not extended else "")]
    lines += [f"  SOP Class: ={uid_name(item.sop_class_uid)}" for item in extended]
    if not accepted:
        common = user_information.sop_class_common_extended
        lines.append("Requested Common Extended Negotiation:" + (" None" if not common else ""))
        lines += [f"  SOP Class: ={uid_name(item.sop_class_uid)}" for item in common]
    window = user_information.async_ops_window
    text = "None" if window is None else f"invoked {window.maximum_invoked}, performed {window.maximum_performed}"
    lines.append(f"{verb} Asynchronous Operations Window Negotiation: {text}")
    identity = user_information.user_identity
    label = "User Identity Negotiation Response" if accepted else "Requested User Identity Negotiation"
    lines.append(f"{label}: " + ("None" if identity is None else type(identity).__name__))
    return lines


def _common_lines(pdu: AssociateRQ | AssociateAC, name: str, outgoing: bool) -> list[str]:
    """The banner, implementation, titles and max PDU lines both PDUs start with."""
    whose = "Our" if outgoing else "Their"
    info = pdu.user_information
    return [
        _banner(("OUTGOING" if outgoing else "INCOMING") + f" {name} PDU"),
        f"{whose} Implementation Class UID: {info.implementation_class_uid}",
        f"{whose} Implementation Version Name: {info.implementation_version_name or 'None'}",
        f"Application Context Name: {pdu.application_context}",
        f"Calling Application Name: {pdu.calling_ae_title}",
        f"Called Application Name: {pdu.called_ae_title}",
        f"{whose} Max PDU Receive Size: {info.maximum_length}",
    ]


def summarize_request(request: AssociateRQ, outgoing: bool) -> list[str]:
    """The lines describing an A-ASSOCIATE-RQ, as sent (outgoing) or received."""
    info = request.user_information
    roles = {item.sop_class_uid: item for item in info.role_selections}
    lines = _common_lines(request, "A-ASSOCIATE-RQ", outgoing)
    lines.append("Presentation Context:" if len(request.presentation_contexts) == 1 else "Presentation Contexts:")
    for item in request.presentation_contexts:
        role = roles.get(item.abstract_syntax)
        lines += [
            f"  Context ID:        {item.context_id} (Proposed)",
            f"    Abstract Syntax: ={uid_name(item.abstract_syntax)}",
            "    Proposed SCP/SCU Role: " + (_role_text(role.scu_role, role.scp_role) if role else "Default"),
            "    Proposed Transfer Syntax" + ("es:" if len(item.transfer_syntaxes) > 1 else ":"),
        ]
        lines += [f"      ={uid_name(syntax)}" for syntax in item.transfer_syntaxes]
    lines += _negotiation_lines(info, accepted=False)
    lines.append(_banner("END A-ASSOCIATE-RQ PDU"))
    return lines


def summarize_accept(accept: AssociateAC, contexts: list[PresentationContext], outgoing: bool) -> list[str]:
    """The lines describing an A-ASSOCIATE-AC with the negotiated `contexts`."""
    info = accept.user_information
    lines = _common_lines(accept, "A-ASSOCIATE-AC", outgoing) + ["Presentation Contexts:"]
    for context in contexts:
        lines += [
            f"  Context ID:        {context.context_id} ({context.status})",
            f"    Abstract Syntax: ={uid_name(context.abstract_syntax)}",
        ]
        if context.accepted:
            lines += [
                f"    Accepted SCP/SCU Role: {_role_text(context.scu_role, context.scp_role)}",
                f"    Accepted Transfer Syntax: ={uid_name(context.transfer_syntax[0])}",
            ]
    lines += _negotiation_lines(info, accepted=True)
    lines.append(_banner("END A-ASSOCIATE-AC PDU"))
    return lines


def reject_text(reject: AssociateRJ) -> str:
    """'Result: Rejected Permanent, Source: Service User, Reason: calling-AE-title-not-recognized'."""
    result = "Rejected Permanent" if reject.result == RejectResult.PERMANENT else "Rejected Transient"
    source = {
        RejectSource.SERVICE_USER: "Service User",
        RejectSource.SERVICE_PROVIDER_ACSE: "Service Provider (ACSE)",
        RejectSource.SERVICE_PROVIDER_PRESENTATION: "Service Provider (Presentation)",
    }.get(reject.source, f"Reserved ({int(reject.source)})")
    return f"Result: {result}, Source: {source}, Reason: {reject_reason_text(reject.source, reject.reason)}"


def log_lines(level: int, describe: Callable[..., list[str]], *args: Any, **kwargs: Any) -> None:
    """Log the lines `describe(*args, **kwargs)` makes, each with its level prefix.

    The description is only built when the level is enabled.
    """
    if LOGGER.isEnabledFor(level):
        for line in describe(*args, **kwargs):
            LOGGER.log(level, line)
