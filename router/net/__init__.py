"""router.net: the DICOM networking engine every router process embeds.

A sans-IO core (PDU codec, Upper Layer state machine, ACSE negotiation, DIMSE
messages) with thin socket drivers, behind an API modelled on pynetdicom's:
`AE`, `build_context`, `build_role`, `evt`, `debug_logger` and the prebuilt
context lists.
"""

from router.net import evt
from router.net.ae import AE
from router.net.association import Association
from router.net.contexts import (
    ALL_TRANSFER_SYNTAXES,
    AllStoragePresentationContexts,
    BasicWorklistManagementPresentationContexts,
    QueryRetrievePresentationContexts,
    StorageCommitmentPresentationContexts,
    StoragePresentationContexts,
    accept_all_storage,
    all_storage_contexts,
)
from router.net.log import debug_logger
from router.net.presentation import (
    DEFAULT_TRANSFER_SYNTAXES,
    PresentationContext,
    VerificationPresentationContexts,
    build_context,
    build_role,
)

__all__ = [
    "AE",
    "ALL_TRANSFER_SYNTAXES",
    "DEFAULT_TRANSFER_SYNTAXES",
    "AllStoragePresentationContexts",
    "Association",
    "BasicWorklistManagementPresentationContexts",
    "PresentationContext",
    "QueryRetrievePresentationContexts",
    "StorageCommitmentPresentationContexts",
    "StoragePresentationContexts",
    "VerificationPresentationContexts",
    "accept_all_storage",
    "all_storage_contexts",
    "build_context",
    "build_role",
    "debug_logger",
    "evt",
]
