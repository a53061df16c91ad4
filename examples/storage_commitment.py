"""Storage Commitment Push Model (PS3.4 Annex J), both sides in one program.

The SCP (port 11112) answers the N-ACTION at once, then reports the result with an N-EVENT-REPORT:
on the same association when the SCU offered to take the SCP role there (role selection), else on
a new association to the SCU's own server. The SCU asks twice, once each way.
"""

import threading

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from router.net import AE, build_role, evt
from router.net.sop_class import CTImageStorage
from router.net.sop_class import StorageCommitmentPushModel as COMMITMENT
from router.net.sop_class import StorageCommitmentPushModelInstance as COMMITMENT_INSTANCE

SUCCESS = 0x0000
REQUEST_COMMITMENT = 1  # the N-ACTION's Action Type ID
ALL_COMMITTED, SOME_FAILED = 1, 2  # the N-EVENT-REPORT's Event Type IDs
NO_SUCH_OBJECT_INSTANCE = 0x0112  # a Failure Reason
STORED = ["1.2.826.0.1.3680043.9.1", "1.2.826.0.1.3680043.9.2"]  # what the SCP holds
WAIT = 10


def reference(instance_uid, failure_reason=None):
    item = Dataset()
    item.ReferencedSOPClassUID = CTImageStorage
    item.ReferencedSOPInstanceUID = instance_uid
    if failure_reason is not None:
        item.FailureReason = failure_reason
    return item


# ---- the Storage Commitment SCP ----
scp_ae = AE("COMMIT_SCP")
scp_ae.add_supported_context(COMMITMENT, scu_role=True, scp_role=True)
scp_ae.add_requested_context(COMMITMENT)
scu_addresses = {}  # AE title -> (host, port), where a report on a new association goes


def commitment_result(request):
    uids = [item.ReferencedSOPInstanceUID for item in request.ReferencedSOPSequence]
    result = Dataset()
    result.TransactionUID = request.TransactionUID
    result.ReferencedSOPSequence = [reference(uid) for uid in uids if uid in STORED]
    failed = [reference(uid, NO_SUCH_OBJECT_INSTANCE) for uid in uids if uid not in STORED]
    if failed:
        result.FailedSOPSequence = failed
    return (SOME_FAILED if failed else ALL_COMMITTED), result


def handle_action(event):
    event_type, result = commitment_result(event.action_information)
    event.after_response(lambda: report(event, event_type, result))
    return SUCCESS, None


def report(event, event_type, result):
    if event.context.as_scu:  # the SCU takes the SCP role of this association
        event.assoc.send_n_event_report(result, event_type, COMMITMENT, COMMITMENT_INSTANCE)
        return
    title = event.assoc.requestor.ae_title
    host, port = scu_addresses[title]
    role = build_role(COMMITMENT, scp_role=True)
    assoc = scp_ae.associate(host, port, ae_title=title, ext_neg=[role])
    if assoc.is_established:
        assoc.send_n_event_report(result, event_type, COMMITMENT, COMMITMENT_INSTANCE)
        assoc.release()


scp_ae.start_server(("127.0.0.1", 11112), block=False, evt_handlers=[(evt.EVT_N_ACTION, handle_action)])

# ---- the Storage Commitment SCU ----
reported = threading.Event()


def handle_report(event):
    result = event.event_information
    committed, failed = len(result.ReferencedSOPSequence), len(result.get("FailedSOPSequence", []))
    where = "same" if event.assoc.is_requestor else "new"
    print(f"Report on the {where} association: event type {event.event_type}, {committed} committed, {failed} failed")
    reported.set()
    return SUCCESS, None


scu_ae = AE("COMMIT_SCU")
scu_ae.add_requested_context(COMMITMENT)
scu_ae.add_supported_context(COMMITMENT, scp_role=True)
handlers = [(evt.EVT_N_EVENT_REPORT, handle_report)]
server = scu_ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
scu_addresses["COMMIT_SCU"] = ("127.0.0.1", server.server_address[1])


def request_commitment(assoc, *instance_uids):
    request = Dataset()
    request.TransactionUID = generate_uid()
    request.ReferencedSOPSequence = [reference(uid) for uid in instance_uids]
    status, _ = assoc.send_n_action(request, REQUEST_COMMITMENT, COMMITMENT, COMMITMENT_INSTANCE)
    print(f"N-ACTION status: 0x{status.Status:04X}")


# 1. Offer the SCP role: the report comes back on this association, served while we wait.
role = build_role(COMMITMENT, scu_role=True, scp_role=True)
assoc = scu_ae.associate("127.0.0.1", 11112, ext_neg=[role], evt_handlers=handlers)
if assoc.is_established:
    request_commitment(assoc, *STORED)
    assoc.run_until(reported.is_set, WAIT)
    assoc.release()

# 2. Default roles: release at once; the report comes to our server on a new association.
reported.clear()
assoc = scu_ae.associate("127.0.0.1", 11112)
if assoc.is_established:
    request_commitment(assoc, STORED[0], "1.2.826.0.1.3680043.9.99")
    assoc.release()
    reported.wait(WAIT)

scu_ae.shutdown()
scp_ae.shutdown()
