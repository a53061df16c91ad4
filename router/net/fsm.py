"""The Upper Layer state transition table of PS3.8 Table 9-10, as data.

This module owns the states (Sta1..Sta13), the events (Evt1..Evt19), the
actions (AE-1..AA-8) and the table that maps (event, state) to an action. It
does nothing itself: `router.net.connection` executes the actions.
"""

from __future__ import annotations

from enum import Enum, IntEnum


class State(IntEnum):
    """The thirteen Upper Layer states; the value is the number in `StaN`."""

    STA1 = 1  # idle
    STA2 = 2  # transport open, awaiting A-ASSOCIATE-RQ
    STA3 = 3  # awaiting local A-ASSOCIATE response
    STA4 = 4  # awaiting transport connection to open
    STA5 = 5  # awaiting A-ASSOCIATE-AC or -RJ
    STA6 = 6  # association established, ready for data transfer
    STA7 = 7  # awaiting A-RELEASE-RP
    STA8 = 8  # awaiting local A-RELEASE response
    STA9 = 9  # release collision requestor: awaiting local A-RELEASE response
    STA10 = 10  # release collision acceptor: awaiting A-RELEASE-RP
    STA11 = 11  # release collision requestor: awaiting A-RELEASE-RP
    STA12 = 12  # release collision acceptor: awaiting local A-RELEASE response
    STA13 = 13  # awaiting transport close

    def __str__(self) -> str:
        return f"Sta{self.value}"


class Event(IntEnum):
    """The nineteen Upper Layer events; the value is the number in `EvtN`."""

    ASSOCIATE_REQUEST = 1  # A-ASSOCIATE request primitive (local user)
    TRANSPORT_CONFIRM = 2  # transport connect confirmation
    AC_RECEIVED = 3  # A-ASSOCIATE-AC PDU received
    RJ_RECEIVED = 4  # A-ASSOCIATE-RJ PDU received
    TRANSPORT_INDICATION = 5  # incoming transport connection
    RQ_RECEIVED = 6  # A-ASSOCIATE-RQ PDU received
    ACCEPT_RESPONSE = 7  # A-ASSOCIATE response primitive (accept)
    REJECT_RESPONSE = 8  # A-ASSOCIATE response primitive (reject)
    DATA_REQUEST = 9  # P-DATA request primitive
    DATA_RECEIVED = 10  # P-DATA-TF PDU received
    RELEASE_REQUEST = 11  # A-RELEASE request primitive
    RELEASE_RQ_RECEIVED = 12  # A-RELEASE-RQ PDU received
    RELEASE_RP_RECEIVED = 13  # A-RELEASE-RP PDU received
    RELEASE_RESPONSE = 14  # A-RELEASE response primitive
    ABORT_REQUEST = 15  # A-ABORT request primitive
    ABORT_RECEIVED = 16  # A-ABORT PDU received
    TRANSPORT_CLOSED = 17  # transport connection closed indication
    ARTIM_EXPIRED = 18  # ARTIM timer expired
    INVALID_PDU = 19  # unrecognised or invalid PDU received

    def __str__(self) -> str:
        return f"Evt{self.value}"


class Action(Enum):
    """The actions of PS3.8 9.2.2; the value is the standard's name."""

    AE_1 = "AE-1"  # issue transport connect
    AE_2 = "AE-2"  # send A-ASSOCIATE-RQ
    AE_3 = "AE-3"  # confirm A-ASSOCIATE (accepted)
    AE_4 = "AE-4"  # confirm A-ASSOCIATE (rejected), close transport
    AE_5 = "AE-5"  # accept transport, start ARTIM
    AE_6 = "AE-6"  # stop ARTIM, check the request, indicate or reject
    AE_7 = "AE-7"  # send A-ASSOCIATE-AC
    AE_8 = "AE-8"  # send A-ASSOCIATE-RJ, start ARTIM
    DT_1 = "DT-1"  # send P-DATA-TF
    DT_2 = "DT-2"  # indicate P-DATA
    AR_1 = "AR-1"  # send A-RELEASE-RQ
    AR_2 = "AR-2"  # indicate A-RELEASE
    AR_3 = "AR-3"  # confirm A-RELEASE, close transport
    AR_4 = "AR-4"  # send A-RELEASE-RP, start ARTIM
    AR_5 = "AR-5"  # stop ARTIM
    AR_6 = "AR-6"  # indicate P-DATA while awaiting A-RELEASE-RP
    AR_7 = "AR-7"  # send P-DATA-TF while awaiting the local release response
    AR_8 = "AR-8"  # indicate A-RELEASE (collision)
    AR_9 = "AR-9"  # send A-RELEASE-RP (collision, requestor)
    AR_10 = "AR-10"  # confirm A-RELEASE (collision, acceptor)
    AA_1 = "AA-1"  # send A-ABORT (service-user), (re)start ARTIM
    AA_2 = "AA-2"  # stop ARTIM, close transport
    AA_3 = "AA-3"  # indicate A-ABORT or A-P-ABORT, close transport
    AA_4 = "AA-4"  # indicate A-P-ABORT
    AA_5 = "AA-5"  # stop ARTIM
    AA_6 = "AA-6"  # ignore the PDU
    AA_7 = "AA-7"  # send A-ABORT
    AA_8 = "AA-8"  # send A-ABORT (service-provider), indicate A-P-ABORT, start ARTIM

    def __str__(self) -> str:
        return self.value


# The state each action leads to; AE-6 and AR-8 branch and are resolved by
# the connection (AE-6: Sta3 or Sta13; AR-8: Sta9 for the requestor, Sta10
# for the acceptor).
NEXT_STATE: dict[Action, State | None] = {
    Action.AE_1: State.STA4,
    Action.AE_2: State.STA5,
    Action.AE_3: State.STA6,
    Action.AE_4: State.STA1,
    Action.AE_5: State.STA2,
    Action.AE_6: None,
    Action.AE_7: State.STA6,
    Action.AE_8: State.STA13,
    Action.DT_1: State.STA6,
    Action.DT_2: State.STA6,
    Action.AR_1: State.STA7,
    Action.AR_2: State.STA8,
    Action.AR_3: State.STA1,
    Action.AR_4: State.STA13,
    Action.AR_5: State.STA1,
    Action.AR_6: State.STA7,
    Action.AR_7: State.STA8,
    Action.AR_8: None,
    Action.AR_9: State.STA11,
    Action.AR_10: State.STA12,
    Action.AA_1: State.STA13,
    Action.AA_2: State.STA1,
    Action.AA_3: State.STA1,
    Action.AA_4: State.STA1,
    Action.AA_5: State.STA1,
    Action.AA_6: State.STA13,
    Action.AA_7: State.STA13,
    Action.AA_8: State.STA13,
}

# PS3.8 Table 9-10, one row per event, one column per state (Sta1..Sta13).
# None marks a cell with no entry: a local primitive there is a usage error,
# and a network or transport event cannot occur there.
_ = None
A = Action
_ROWS: dict[Event, tuple[Action | None, ...]] = {
    # fmt: off
    #                             Sta1     Sta2     Sta3     Sta4     Sta5     Sta6     Sta7     Sta8     Sta9     Sta10     Sta11    Sta12    Sta13
    Event.ASSOCIATE_REQUEST:    (A.AE_1, _,       _,       _,       _,       _,       _,       _,       _,       _,        _,       _,       _),
    Event.TRANSPORT_CONFIRM:    (_,      _,       _,       A.AE_2,  _,       _,       _,       _,       _,       _,        _,       _,       _),
    Event.AC_RECEIVED:          (_,      A.AA_1,  A.AA_8,  _,       A.AE_3,  A.AA_8,  A.AA_8,  A.AA_8,  A.AA_8,  A.AA_8,   A.AA_8,  A.AA_8,  A.AA_6),
    Event.RJ_RECEIVED:          (_,      A.AA_1,  A.AA_8,  _,       A.AE_4,  A.AA_8,  A.AA_8,  A.AA_8,  A.AA_8,  A.AA_8,   A.AA_8,  A.AA_8,  A.AA_6),
    Event.TRANSPORT_INDICATION: (A.AE_5, _,       _,       _,       _,       _,       _,       _,       _,       _,        _,       _,       _),
    Event.RQ_RECEIVED:          (_,      A.AE_6,  A.AA_8,  _,       A.AA_8,  A.AA_8,  A.AA_8,  A.AA_8,  A.AA_8,  A.AA_8,   A.AA_8,  A.AA_8,  A.AA_7),
    Event.ACCEPT_RESPONSE:      (_,      _,       A.AE_7,  _,       _,       _,       _,       _,       _,       _,        _,       _,       _),
    Event.REJECT_RESPONSE:      (_,      _,       A.AE_8,  _,       _,       _,       _,       _,       _,       _,        _,       _,       _),
    Event.DATA_REQUEST:         (_,      _,       _,       _,       _,       A.DT_1,  _,       A.AR_7,  _,       _,        _,       _,       _),
    Event.DATA_RECEIVED:        (_,      A.AA_1,  A.AA_8,  _,       A.AA_8,  A.DT_2,  A.AR_6,  A.AA_8,  A.AA_8,  A.AA_8,   A.AA_8,  A.AA_8,  A.AA_6),
    Event.RELEASE_REQUEST:      (_,      _,       _,       _,       _,       A.AR_1,  _,       _,       _,       _,        _,       _,       _),
    Event.RELEASE_RQ_RECEIVED:  (_,      A.AA_1,  A.AA_8,  _,       A.AA_8,  A.AR_2,  A.AR_8,  A.AA_8,  A.AA_8,  A.AA_8,   A.AA_8,  A.AA_8,  A.AA_6),
    Event.RELEASE_RP_RECEIVED:  (_,      A.AA_1,  A.AA_8,  _,       A.AA_8,  A.AA_8,  A.AR_3,  A.AA_8,  A.AA_8,  A.AR_10,  A.AR_3,  A.AA_8,  A.AA_6),
    Event.RELEASE_RESPONSE:     (_,      _,       _,       _,       _,       _,       _,       A.AR_4,  A.AR_9,  _,        _,       A.AR_4,  _),
    Event.ABORT_REQUEST:        (_,      _,       A.AA_1,  A.AA_2,  A.AA_1,  A.AA_1,  A.AA_1,  A.AA_1,  A.AA_1,  A.AA_1,   A.AA_1,  A.AA_1,  _),
    Event.ABORT_RECEIVED:       (_,      A.AA_2,  A.AA_3,  _,       A.AA_3,  A.AA_3,  A.AA_3,  A.AA_3,  A.AA_3,  A.AA_3,   A.AA_3,  A.AA_3,  A.AA_2),
    Event.TRANSPORT_CLOSED:     (_,      A.AA_5,  A.AA_4,  A.AA_4,  A.AA_4,  A.AA_4,  A.AA_4,  A.AA_4,  A.AA_4,  A.AA_4,   A.AA_4,  A.AA_4,  A.AR_5),
    Event.ARTIM_EXPIRED:        (_,      A.AA_2,  _,       _,       _,       _,       _,       _,       _,       _,        _,       _,       A.AA_2),
    Event.INVALID_PDU:          (_,      A.AA_1,  A.AA_8,  _,       A.AA_8,  A.AA_8,  A.AA_8,  A.AA_8,  A.AA_8,  A.AA_8,   A.AA_8,  A.AA_8,  A.AA_7),
    # fmt: on
}
del _, A

TRANSITIONS: dict[tuple[Event, State], Action] = {
    (event, State(column + 1)): action
    for event, row in _ROWS.items()
    for column, action in enumerate(row)
    if action is not None
}

# Events a local user causes; one of these in a state without an entry is a
# usage error, not a protocol error.
LOCAL_PRIMITIVES = frozenset(
    {
        Event.ASSOCIATE_REQUEST,
        Event.ACCEPT_RESPONSE,
        Event.REJECT_RESPONSE,
        Event.DATA_REQUEST,
        Event.RELEASE_REQUEST,
        Event.RELEASE_RESPONSE,
        Event.ABORT_REQUEST,
    }
)

# Actions that start (or restart) the ARTIM timer, and those that stop it.
STARTS_ARTIM = frozenset({Action.AE_5, Action.AE_8, Action.AR_4, Action.AA_1, Action.AA_8})
STOPS_ARTIM = frozenset({Action.AE_6, Action.AR_5, Action.AA_2, Action.AA_5})


def action_for(event: Event, state: State) -> Action | None:
    """The action the table names for `event` in `state`, or None if the cell is empty."""
    return TRANSITIONS.get((event, state))


class Step:
    """One non-empty cell, precomputed for the hot path: what to run and where it leads.

    `method` names the Connection method that performs the action; `next_state` is
    None where the action decides it (AE-6, AR-8).
    """

    __slots__ = ("action", "method", "next_state", "starts_artim", "stops_artim")

    def __init__(self, action: Action) -> None:
        self.action = action
        self.method = "_" + action.name.lower()
        self.next_state = NEXT_STATE[action]
        self.starts_artim = action in STARTS_ARTIM
        self.stops_artim = action in STOPS_ARTIM


_STEP_OF_ACTION = {action: Step(action) for action in Action}

# STEPS[event][state]: the table indexed by the events' and states' numbers
# (index 0 unused), so a lookup hashes nothing.
STEPS: list[list[Step | None]] = [[None] * (len(State) + 1) for _ in range(len(Event) + 1)]
for (_event, _state), _action in TRANSITIONS.items():
    STEPS[_event][_state] = _STEP_OF_ACTION[_action]
del _event, _state, _action
