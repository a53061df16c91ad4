"""The Upper Layer state table as data (router.net.fsm) against PS3.8 Table 9-10.

The expected table is written out below as the reference prints it (section 2.4 of
/work/shared/reference/dicom-network-protocol.md), one row per event, one column per state,
``-`` for an empty cell. It is parsed here independently of ``router.net.fsm`` and compared cell by
cell; ``tests/net/test_connection.py`` reuses it to drive every non-empty cell on a real
connection.
"""

from __future__ import annotations

import pytest

from router.net.fsm import (
    LOCAL_PRIMITIVES, NEXT_STATE, STARTS_ARTIM, STOPS_ARTIM, TRANSITIONS, Action, Event, State,
    action_for,
)  # fmt: skip

# PS3.8 Table 9-10 (reference section 2.4), transcribed as printed.
TABLE_9_10 = """
        Sta1  Sta2  Sta3  Sta4  Sta5  Sta6  Sta7  Sta8  Sta9  Sta10  Sta11  Sta12  Sta13
Evt1    AE-1  -     -     -     -     -     -     -     -     -      -      -      -
Evt2    -     -     -     AE-2  -     -     -     -     -     -      -      -      -
Evt3    -     AA-1  AA-8  -     AE-3  AA-8  AA-8  AA-8  AA-8  AA-8   AA-8   AA-8   AA-6
Evt4    -     AA-1  AA-8  -     AE-4  AA-8  AA-8  AA-8  AA-8  AA-8   AA-8   AA-8   AA-6
Evt5    AE-5  -     -     -     -     -     -     -     -     -      -      -      -
Evt6    -     AE-6  AA-8  -     AA-8  AA-8  AA-8  AA-8  AA-8  AA-8   AA-8   AA-8   AA-7
Evt7    -     -     AE-7  -     -     -     -     -     -     -      -      -      -
Evt8    -     -     AE-8  -     -     -     -     -     -     -      -      -      -
Evt9    -     -     -     -     -     DT-1  -     AR-7  -     -      -      -      -
Evt10   -     AA-1  AA-8  -     AA-8  DT-2  AR-6  AA-8  AA-8  AA-8   AA-8   AA-8   AA-6
Evt11   -     -     -     -     -     AR-1  -     -     -     -      -      -      -
Evt12   -     AA-1  AA-8  -     AA-8  AR-2  AR-8  AA-8  AA-8  AA-8   AA-8   AA-8   AA-6
Evt13   -     AA-1  AA-8  -     AA-8  AA-8  AR-3  AA-8  AA-8  AR-10  AR-3   AA-8   AA-6
Evt14   -     -     -     -     -     -     -     AR-4  AR-9  -      -      AR-4   -
Evt15   -     -     AA-1  AA-2  AA-1  AA-1  AA-1  AA-1  AA-1  AA-1   AA-1   AA-1   -
Evt16   -     AA-2  AA-3  -     AA-3  AA-3  AA-3  AA-3  AA-3  AA-3   AA-3   AA-3   AA-2
Evt17   -     AA-5  AA-4  AA-4  AA-4  AA-4  AA-4  AA-4  AA-4  AA-4   AA-4   AA-4   AR-5
Evt18   -     AA-2  -     -     -     -     -     -     -     -      -      -      AA-2
Evt19   -     AA-1  AA-8  -     AA-8  AA-8  AA-8  AA-8  AA-8  AA-8   AA-8   AA-8   AA-7
"""


def parse_table(text: str) -> dict[tuple[int, int], str]:
    """``{(event number, state number): "AA-8" or "-"}`` for all 19 x 13 cells."""
    header, *rows = [line.split() for line in text.strip().splitlines()]
    states = [int(name.removeprefix("Sta")) for name in header]
    cells = {}
    for event_name, *row in rows:
        event = int(event_name.removeprefix("Evt"))
        assert len(row) == len(states), event_name
        cells.update({(event, state): cell for state, cell in zip(states, row)})
    return cells


CELLS = parse_table(TABLE_9_10)
ALL_CELLS = sorted(CELLS)
NON_EMPTY_CELLS = [cell for cell in ALL_CELLS if CELLS[cell] != "-"]

# Reference section 2.3: the state each action leads to; AE-6 (Sta3 or Sta13) and AR-8 (Sta9 for
# the association-requestor, Sta10 for the acceptor) branch.
EXPECTED_NEXT_STATE = {
    "AE-1": 4, "AE-2": 5, "AE-3": 6, "AE-4": 1, "AE-5": 2, "AE-6": None, "AE-7": 6, "AE-8": 13,
    "DT-1": 6, "DT-2": 6,
    "AR-1": 7, "AR-2": 8, "AR-3": 1, "AR-4": 13, "AR-5": 1, "AR-6": 7, "AR-7": 8, "AR-8": None,
    "AR-9": 11, "AR-10": 12,
    "AA-1": 13, "AA-2": 1, "AA-3": 1, "AA-4": 1, "AA-5": 1, "AA-6": 13, "AA-7": 13, "AA-8": 13,
}  # fmt: skip

# Reference section 2.5 (AE-6 starts ARTIM only on its reject branch, which the connection handles).
EXPECTED_STARTS_ARTIM = {"AE-5", "AE-8", "AR-4", "AA-1", "AA-8"}
EXPECTED_STOPS_ARTIM = {"AE-6", "AR-5", "AA-2", "AA-5"}

# Events a local user causes (reference section 2.2, source "local user").
EXPECTED_LOCAL_PRIMITIVES = {1, 7, 8, 9, 11, 14, 15}


def test_the_transcribed_table_has_19_events_13_states_and_123_entries():
    assert len(CELLS) == 19 * 13
    assert {event for event, _ in CELLS} == set(range(1, 20))
    assert {state for _, state in CELLS} == set(range(1, 14))
    assert len(NON_EMPTY_CELLS) == 123


@pytest.mark.parametrize("event, state", ALL_CELLS, ids=[f"Evt{e}-Sta{s}" for e, s in ALL_CELLS])
def test_cell_matches_table_9_10(event, state):
    action = action_for(Event(event), State(state))
    assert (str(action) if action is not None else "-") == CELLS[event, state]
    assert TRANSITIONS.get((Event(event), State(state))) is action


def test_transitions_hold_no_cell_outside_the_table():
    as_text = {(int(event), int(state)): str(action) for (event, state), action in TRANSITIONS.items()}
    assert as_text == {cell: action for cell, action in CELLS.items() if action != "-"}


def test_states_and_events_are_numbered_like_the_standard():
    assert [int(state) for state in State] == list(range(1, 14))
    assert [str(state) for state in State] == [f"Sta{n}" for n in range(1, 14)]
    assert [int(event) for event in Event] == list(range(1, 20))
    assert [str(event) for event in Event] == [f"Evt{n}" for n in range(1, 20)]


def test_actions_are_the_28_of_ps38_9_2_2():
    assert {str(action) for action in Action} == set(EXPECTED_NEXT_STATE)
    assert all(action.name == str(action).replace("-", "_") for action in Action)


def test_every_action_appears_in_the_table():
    assert {str(action) for action in TRANSITIONS.values()} == set(EXPECTED_NEXT_STATE)


@pytest.mark.parametrize("name", sorted(EXPECTED_NEXT_STATE))
def test_next_state_of_action(name):
    expected = EXPECTED_NEXT_STATE[name]
    assert NEXT_STATE[Action(name)] == (None if expected is None else State(expected))


def test_next_state_covers_every_action():
    assert set(NEXT_STATE) == set(Action)


def test_artim_start_and_stop_sets():
    assert {str(action) for action in STARTS_ARTIM} == EXPECTED_STARTS_ARTIM
    assert {str(action) for action in STOPS_ARTIM} == EXPECTED_STOPS_ARTIM
    assert not STARTS_ARTIM & STOPS_ARTIM


def test_artim_runs_only_where_the_table_can_expire_it():
    """Every action that starts ARTIM leads to Sta2 or Sta13, the only states with an Evt18 entry."""
    expiring = {state for (event, state), cell in CELLS.items() if event == 18 and cell != "-"}
    assert expiring == {2, 13}
    for action in STARTS_ARTIM:
        assert NEXT_STATE[action] in {State(state) for state in expiring}
    # Leaving Sta2 or Sta13 for any state but themselves stops the timer or closes.
    for (event, state), cell in CELLS.items():
        if state in expiring and cell != "-":
            target = EXPECTED_NEXT_STATE[cell]
            if target not in (13, 2):
                assert cell in EXPECTED_STOPS_ARTIM, (event, state, cell)


def test_local_primitives():
    assert {int(event) for event in LOCAL_PRIMITIVES} == EXPECTED_LOCAL_PRIMITIVES
