"""PS3.8 Table 9-10, the DICOM UL state transition table, as data.

``TRANSITIONS`` holds exactly the cells the standard fills in, keyed
``(State, Event)``. ``BLANK_CELL`` says what the machine does for every other
cell, and why, so that all 13 x 19 cells have a defined, tested outcome.
Coverage reports and diagrams are generated from these dicts; nothing else
in the package may encode a transition.
"""

from __future__ import annotations

from enum import Enum

from pacsref.ul.states import LOCAL_USER_EVENTS, Action, Event, State

_S = State
_E = Event
_A = Action


def _row(event: Event, cells: dict[State, Action]) -> dict[tuple[State, Event], Action]:
    return {(state, event): action for state, action in cells.items()}


#: States in which an association (or its negotiation) exists and a PDU from
#: the peer is a protocol error answered by AA-8.
_AA8_STATES = (_S.Sta3, _S.Sta5, _S.Sta6, _S.Sta7, _S.Sta8, _S.Sta9, _S.Sta10, _S.Sta11, _S.Sta12)


def _pdu_row(event: Event, overrides: dict[State, Action]) -> dict[tuple[State, Event], Action]:
    """A received-PDU column: AA-1 in Sta2, AA-8 while associated, AA-6 in Sta13."""
    cells = {_S.Sta2: _A.AA_1, **dict.fromkeys(_AA8_STATES, _A.AA_8), _S.Sta13: _A.AA_6}
    cells.update(overrides)
    return _row(event, cells)


TRANSITIONS: dict[tuple[State, Event], Action] = {
    **_row(_E.Evt1, {_S.Sta1: _A.AE_1}),
    **_row(_E.Evt2, {_S.Sta4: _A.AE_2}),
    **_pdu_row(_E.Evt3, {_S.Sta5: _A.AE_3, _S.Sta3: _A.AA_8}),
    **_pdu_row(_E.Evt4, {_S.Sta5: _A.AE_4}),
    **_row(_E.Evt5, {_S.Sta1: _A.AE_5}),
    **_pdu_row(_E.Evt6, {_S.Sta2: _A.AE_6, _S.Sta13: _A.AA_7}),
    **_row(_E.Evt7, {_S.Sta3: _A.AE_7}),
    **_row(_E.Evt8, {_S.Sta3: _A.AE_8}),
    **_row(_E.Evt9, {_S.Sta6: _A.DT_1, _S.Sta8: _A.AR_7}),
    **_pdu_row(_E.Evt10, {_S.Sta6: _A.DT_2, _S.Sta7: _A.AR_6}),
    **_row(_E.Evt11, {_S.Sta6: _A.AR_1}),
    **_pdu_row(_E.Evt12, {_S.Sta6: _A.AR_2, _S.Sta7: _A.AR_8}),
    **_pdu_row(_E.Evt13, {_S.Sta7: _A.AR_3, _S.Sta10: _A.AR_10, _S.Sta11: _A.AR_3}),
    **_row(_E.Evt14, {_S.Sta8: _A.AR_4, _S.Sta9: _A.AR_9, _S.Sta12: _A.AR_4}),
    **_row(
        _E.Evt15,
        {_S.Sta3: _A.AA_1, _S.Sta4: _A.AA_2, **dict.fromkeys(_AA8_STATES[1:], _A.AA_1)},
    ),
    **_row(
        _E.Evt16,
        {_S.Sta2: _A.AA_2, **dict.fromkeys(_AA8_STATES, _A.AA_3), _S.Sta13: _A.AA_2},
    ),
    **_row(
        _E.Evt17,
        {
            _S.Sta2: _A.AA_5,
            _S.Sta4: _A.AA_4,
            **dict.fromkeys(_AA8_STATES, _A.AA_4),
            _S.Sta13: _A.AR_5,
        },
    ),
    **_row(_E.Evt18, {_S.Sta2: _A.AA_2, _S.Sta13: _A.AA_2}),
    **_pdu_row(_E.Evt19, {_S.Sta13: _A.AA_7}),
}


#: The next state of every action whose successor does not depend on context.
#: AE-6 (Sta3 or Sta13, by acceptability) and AR-8 (Sta9 or Sta10, by role)
#: are decided in the machine.
NEXT_STATE: dict[Action, State] = {
    _A.AE_1: _S.Sta4,
    _A.AE_2: _S.Sta5,
    _A.AE_3: _S.Sta6,
    _A.AE_4: _S.Sta1,
    _A.AE_5: _S.Sta2,
    _A.AE_7: _S.Sta6,
    _A.AE_8: _S.Sta13,
    _A.DT_1: _S.Sta6,
    _A.DT_2: _S.Sta6,
    _A.AR_1: _S.Sta7,
    _A.AR_2: _S.Sta8,
    _A.AR_3: _S.Sta1,
    _A.AR_4: _S.Sta13,
    _A.AR_5: _S.Sta1,
    _A.AR_6: _S.Sta7,
    _A.AR_7: _S.Sta8,
    _A.AR_9: _S.Sta11,
    _A.AR_10: _S.Sta12,
    _A.AA_1: _S.Sta13,
    _A.AA_2: _S.Sta1,
    _A.AA_3: _S.Sta1,
    _A.AA_4: _S.Sta1,
    _A.AA_5: _S.Sta1,
    _A.AA_6: _S.Sta13,
    _A.AA_7: _S.Sta13,
    _A.AA_8: _S.Sta13,
}


class BlankCell(Enum):
    """What happens in a cell PS3.8 Table 9-10 leaves blank."""

    #: A local primitive the state does not allow: our own misuse, raised as
    #: LocalProtocolError; the machine's state is unchanged.
    REFUSE_LOCAL = "refuse"
    #: An event that cannot come from the peer in this state (no transport
    #: exists yet, so no PDU can arrive; a stale timer; a transport indication
    #: for the wrong role). Ignored, state unchanged.
    IGNORE = "ignore"


def blank_cell(state: State, event: Event) -> BlankCell:
    """Disposition of a cell missing from :data:`TRANSITIONS`."""
    if (state, event) in TRANSITIONS:
        raise KeyError(f"{state.name} + {event.name} is not blank")
    return BlankCell.REFUSE_LOCAL if event in LOCAL_USER_EVENTS else BlankCell.IGNORE
