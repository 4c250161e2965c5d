"""States, events and actions of the DICOM UL protocol machine (PS3.8 9.2).

Names and wording are the standard's (Tables 9-2, 9-6 through 9-9) so that a
reader can hold this file next to PS3.8 and compare line by line. All state
that affects transitions is listed here and in :mod:`pacsref.ul.table`; the
machine does not know which role it plays except where Table 9-10 says so
(AR-8 picks Sta9 or Sta10 by role).
"""

from __future__ import annotations

from enum import Enum


class State(Enum):
    """PS3.8 Table 9-2: states of the upper layer protocol machine."""

    #: Idle
    Sta1 = "Idle"
    #: Transport connection open (Awaiting A-ASSOCIATE-RQ PDU)
    Sta2 = "Transport connection open (Awaiting A-ASSOCIATE-RQ PDU)"
    #: Awaiting local A-ASSOCIATE response primitive (from local user)
    Sta3 = "Awaiting local A-ASSOCIATE response primitive (from local user)"
    #: Awaiting transport connection opening to complete (from local transport service)
    Sta4 = "Awaiting transport connection opening to complete (from local transport service)"
    #: Awaiting A-ASSOCIATE-AC or A-ASSOCIATE-RJ PDU
    Sta5 = "Awaiting A-ASSOCIATE-AC or A-ASSOCIATE-RJ PDU"
    #: Association established and ready for data transfer
    Sta6 = "Association established and ready for data transfer"
    #: Awaiting A-RELEASE-RP PDU
    Sta7 = "Awaiting A-RELEASE-RP PDU"
    #: Awaiting local A-RELEASE response primitive (from local user)
    Sta8 = "Awaiting local A-RELEASE response primitive (from local user)"
    #: Release collision requestor side; awaiting A-RELEASE response (from local user)
    Sta9 = "Release collision requestor side; awaiting A-RELEASE response (from local user)"
    #: Release collision acceptor side; awaiting A-RELEASE-RP PDU
    Sta10 = "Release collision acceptor side; awaiting A-RELEASE-RP PDU"
    #: Release collision requestor side; awaiting A-RELEASE-RP PDU
    Sta11 = "Release collision requestor side; awaiting A-RELEASE-RP PDU"
    #: Release collision acceptor side; awaiting A-RELEASE response primitive
    #: (from local user)
    Sta12 = (
        "Release collision acceptor side; awaiting A-RELEASE response primitive (from local user)"
    )
    #: Awaiting Transport Connection Close Indication (Association no longer exists)
    Sta13 = "Awaiting Transport Connection Close Indication (Association no longer exists)"


class Event(Enum):
    """PS3.8 Table 9-6 (and 9-10 column heads): events of the protocol machine."""

    #: A-ASSOCIATE Request (local user)
    Evt1 = "A-ASSOCIATE Request (local user)"
    #: Transport Conn. Confirm (local transport service)
    Evt2 = "Transport Conn. Confirm (local transport service)"
    #: A-ASSOCIATE-AC PDU (received on transport connection)
    Evt3 = "A-ASSOCIATE-AC PDU (received on transport connection)"
    #: A-ASSOCIATE-RJ PDU (received on transport connection)
    Evt4 = "A-ASSOCIATE-RJ PDU (received on transport connection)"
    #: Transport Connection Indication (local transport service)
    Evt5 = "Transport Connection Indication (local transport service)"
    #: A-ASSOCIATE-RQ PDU (received on transport connection)
    Evt6 = "A-ASSOCIATE-RQ PDU (received on transport connection)"
    #: A-ASSOCIATE response primitive (accept)
    Evt7 = "A-ASSOCIATE response primitive (accept)"
    #: A-ASSOCIATE response primitive (reject)
    Evt8 = "A-ASSOCIATE response primitive (reject)"
    #: P-DATA request primitive
    Evt9 = "P-DATA request primitive"
    #: P-DATA-TF PDU
    Evt10 = "P-DATA-TF PDU"
    #: A-RELEASE Request primitive
    Evt11 = "A-RELEASE Request primitive"
    #: A-RELEASE-RQ PDU (on transport)
    Evt12 = "A-RELEASE-RQ PDU (on transport)"
    #: A-RELEASE-RP PDU (on transport)
    Evt13 = "A-RELEASE-RP PDU (on transport)"
    #: A-RELEASE response primitive
    Evt14 = "A-RELEASE response primitive"
    #: A-ABORT Request primitive
    Evt15 = "A-ABORT Request primitive"
    #: A-ABORT PDU (on transport)
    Evt16 = "A-ABORT PDU (on transport)"
    #: Transport connection closed indication (local transport service)
    Evt17 = "Transport connection closed indication (local transport service)"
    #: ARTIM timer expired (Association reject/release timer)
    Evt18 = "ARTIM timer expired (Association reject/release timer)"
    #: Unrecognized or invalid PDU received
    Evt19 = "Unrecognized or invalid PDU received"


#: Events that are primitives issued by the local user: in a blank cell of
#: Table 9-10 they are our own misuse (LocalProtocolError), never the peer's.
LOCAL_USER_EVENTS = frozenset(
    {Event.Evt1, Event.Evt7, Event.Evt8, Event.Evt9, Event.Evt11, Event.Evt14, Event.Evt15}
)


class Action(Enum):
    """PS3.8 Tables 9-7, 9-8 and 9-9: the actions of the protocol machine."""

    #: Issue TRANSPORT CONNECT request primitive to local transport service. Next: Sta4
    AE_1 = "AE-1"
    #: Send A-ASSOCIATE-RQ-PDU. Next: Sta5
    AE_2 = "AE-2"
    #: Issue A-ASSOCIATE confirmation (accept) primitive. Next: Sta6
    AE_3 = "AE-3"
    #: Issue A-ASSOCIATE confirmation (reject) primitive and close transport connection. Next: Sta1
    AE_4 = "AE-4"
    #: Issue Transport connection response primitive; start ARTIM timer. Next: Sta2
    AE_5 = "AE-5"
    #: Stop ARTIM timer and if A-ASSOCIATE-RQ acceptable by service-provider: issue
    #: A-ASSOCIATE indication primitive, next Sta3; otherwise issue A-ASSOCIATE-RJ-PDU
    #: and start ARTIM timer, next Sta13
    AE_6 = "AE-6"
    #: Send A-ASSOCIATE-AC PDU. Next: Sta6
    AE_7 = "AE-7"
    #: Send A-ASSOCIATE-RJ PDU and start ARTIM timer. Next: Sta13
    AE_8 = "AE-8"
    #: Send P-DATA-TF PDU. Next: Sta6
    DT_1 = "DT-1"
    #: Send P-DATA indication primitive. Next: Sta6
    DT_2 = "DT-2"
    #: Send A-RELEASE-RQ PDU. Next: Sta7
    AR_1 = "AR-1"
    #: Issue A-RELEASE indication primitive. Next: Sta8
    AR_2 = "AR-2"
    #: Issue A-RELEASE confirmation primitive, and close transport connection. Next: Sta1
    AR_3 = "AR-3"
    #: Issue A-RELEASE-RP PDU and start ARTIM timer. Next: Sta13
    AR_4 = "AR-4"
    #: Stop ARTIM timer. Next: Sta1
    AR_5 = "AR-5"
    #: Issue P-DATA indication. Next: Sta7
    AR_6 = "AR-6"
    #: Issue P-DATA-TF PDU. Next: Sta8
    AR_7 = "AR-7"
    #: Issue A-RELEASE indication (release collision): if association-requestor,
    #: next state is Sta9, if not Sta10
    AR_8 = "AR-8"
    #: Send A-RELEASE-RP PDU. Next: Sta11
    AR_9 = "AR-9"
    #: Issue A-RELEASE confirmation primitive. Next: Sta12
    AR_10 = "AR-10"
    #: Send A-ABORT PDU (service-user source) and start (or restart if already
    #: started) ARTIM timer. Next: Sta13
    AA_1 = "AA-1"
    #: Stop ARTIM timer if running. Close transport connection. Next: Sta1
    AA_2 = "AA-2"
    #: If (service-user initiated abort): issue A-ABORT indication and close transport
    #: connection; otherwise (service-provider initiated abort): issue A-P-ABORT
    #: indication and close transport connection. Next: Sta1
    AA_3 = "AA-3"
    #: Issue an A-P-ABORT indication primitive. Next: Sta1
    AA_4 = "AA-4"
    #: Stop ARTIM timer. Next: Sta1
    AA_5 = "AA-5"
    #: Ignore PDU. Next: Sta13
    AA_6 = "AA-6"
    #: Send A-ABORT PDU. Next: Sta13
    AA_7 = "AA-7"
    #: Send A-ABORT PDU (service-provider source), issue an A-P-ABORT indication,
    #: and start ARTIM timer. Next: Sta13
    AA_8 = "AA-8"
