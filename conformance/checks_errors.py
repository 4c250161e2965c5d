"""Checks of the server's reaction to invalid, unexpected and oversized PDUs.

PS3.8 Table 9-10 says what an acceptor does with each: an unrecognized or
invalid PDU in Sta6 is Evt19 -> AA-8 (A-ABORT, service-provider source), an
A-ASSOCIATE-RQ in Sta6 is Evt6 -> AA-8, and a malformed RQ in Sta2 is Evt19 ->
AA-1. After the server's A-ABORT it is our side that closes (AA-3), so the
checks judge the A-ABORT and then hang up rather than time the server's ARTIM.
"""

from __future__ import annotations

import struct

from conformance.probes import (
    ENDING_PDUS,
    accepted,
    connected,
    describe_reply,
    expect_abort,
    release_quietly,
)
from conformance.registry import CheckFailed, CheckSkipped, Target, check
from simulators.misbehaving import (
    CONTROL_COMMAND,
    DICOM_APP_CONTEXT,
    P_DATA_TF,
    PDUDecodeError,
    RawPeer,
    associate_rq,
    decode_p_data,
    p_data,
)

#: The smallest max PDU we propose in UL-MAXPDU-FRAG: a C-ECHO-RSP command
#: set is 78 bytes or more, so it cannot fit and must be fragmented.
SMALL_MAX_PDU = 64


@check(
    "UL-BAD-PDU-TYPE",
    "unknown PDU type 0x0A after the AC gets A-ABORT (2, 1)",
    "PS3.8 9.3.1, 9.3.8 Table 9-26, Table 9-10 Sta6+Evt19 AA-8",
)
def ul_bad_pdu_type(target: Target) -> str:
    """An unrecognized PDU is answered with A-ABORT unrecognized-PDU, not silence."""
    with connected(target) as peer:
        accepted(peer, target)
        peer.send_pdu(0x0A, bytes(4))
        reaction = peer.react(target.timeout, until=ENDING_PDUS)
    return expect_abort(reaction, 1, "after PDU type 0x0A")


@check(
    "UL-UNEXPECTED-PDU",
    "second A-ASSOCIATE-RQ after the AC gets A-ABORT (2, 2)",
    "PS3.8 9.3.8 Table 9-26, Table 9-10 Sta6+Evt6 AA-8",
)
def ul_unexpected_pdu(target: Target) -> str:
    """A valid PDU in the wrong state is answered with A-ABORT unexpected-PDU."""
    with connected(target) as peer:
        accepted(peer, target)
        peer.send_bytes(associate_rq(target.called_ae, target.calling_ae))
        reaction = peer.react(target.timeout, until=ENDING_PDUS)
    return expect_abort(reaction, 2, "after a second A-ASSOCIATE-RQ")


def malformed_associate_rq(called: str, calling: str) -> bytes:
    """An A-ASSOCIATE-RQ whose PDU length is right but whose first context item lies.

    The presentation context item claims 0xFFF0 bytes while only a few dozen
    follow, so a decoder that trusts item lengths reads past the PDU.
    """
    rq = bytearray(associate_rq(called, calling))
    # 6-byte PDU header + 68 fixed bytes, then the application context item.
    context_item = 6 + 68 + 4 + len(DICOM_APP_CONTEXT)
    if rq[context_item] != 0x20:
        raise RuntimeError("A-ASSOCIATE-RQ layout changed; fix the offset")
    struct.pack_into(">H", rq, context_item + 2, 0xFFF0)
    return bytes(rq)


@check(
    "UL-MALFORMED",
    "malformed A-ASSOCIATE-RQ is aborted or rejected, server keeps serving",
    "PS3.8 9.3.2, Table 9-10 Sta2+Evt19 AA-1",
)
def ul_malformed(target: Target) -> str:
    """Inconsistent item lengths must end that connection, not the server."""
    with connected(target) as peer:
        peer.send_bytes(malformed_associate_rq(target.called_ae, target.calling_ae))
        reaction = peer.react(target.timeout, until=ENDING_PDUS)
    what = reaction.describe()
    if not reaction.stopped:
        raise CheckFailed(
            f"after a malformed A-ASSOCIATE-RQ: {what} (no A-ABORT or A-ASSOCIATE-RJ)"
        )
    with connected(target) as probe:
        accepted(probe, target)
        release_quietly(probe)
    return f"after a malformed A-ASSOCIATE-RQ: {what}; a fresh association is accepted"


@check(
    "UL-PDATA-TOO-LONG",
    "P-DATA-TF longer than the announced max PDU gets A-ABORT",
    "PS3.8 9.3.5, D.1, Table 9-10 Sta6+Evt19 AA-8",
)
def ul_pdata_too_long(target: Target) -> str:
    """The max PDU the server announced is a limit on us; one byte over it is invalid."""
    with connected(target) as peer:
        ac = accepted(peer, target)
        if ac.max_pdu is None:
            release_quietly(peer)
            raise CheckSkipped("the AC carries no Maximum Length sub-item")
        if ac.max_pdu == 0:
            release_quietly(peer)
            raise CheckSkipped("the server announced max PDU 0 (unlimited)")
        # PDU length = PDV length field (4) + context ID (1) + control (1) + data.
        data = bytes(ac.max_pdu - 6 + 1)
        oversized = p_data([(1, CONTROL_COMMAND, data)])
        try:
            peer.send_bytes(oversized)
        except OSError as exc:
            raise CheckFailed(f"connection dropped while sending: {exc}") from exc
        reaction = peer.react(target.timeout, until=ENDING_PDUS)
    provocation = f"P-DATA-TF of length {len(oversized) - 6} (server max {ac.max_pdu})"
    return expect_abort(reaction, None, provocation)


def _fragment_lengths(peer: RawPeer, after: int) -> list[int]:
    """Lengths of every P-DATA-TF the server sent after its ``after``-th PDU."""
    return [len(payload) for t, payload in peer.received[after:] if t == P_DATA_TF]


@check(
    "UL-MAXPDU-FRAG",
    f"with our max PDU {SMALL_MAX_PDU}, the C-ECHO-RSP comes fragmented within it",
    "PS3.8 9.3.5, D.1; PS3.8 Annex E",
)
def ul_maxpdu_frag(target: Target) -> str:
    """The server must cut its P-DATA-TF PDUs to the length *we* announced."""
    with connected(target) as peer:
        ac = accepted(peer, target, max_pdu=SMALL_MAX_PDU)
        ctx = ac.context(1)
        if ctx is None or ctx.result != 0:
            raise CheckFailed(f"context 1 not accepted: {describe_reply(ac)}")
        after = len(peer.received)
        try:
            status = peer.echo(1, message_id=9)
        except (ConnectionError, PDUDecodeError, ValueError, TimeoutError) as exc:
            lengths = _fragment_lengths(peer, after)
            raise CheckFailed(f"no valid C-ECHO-RSP ({exc}); P-DATA-TF lengths {lengths}") from exc
        lengths = _fragment_lengths(peer, after)
        pdvs = sum(len(decode_p_data(p)) for t, p in peer.received[after:] if t == P_DATA_TF)
        release_quietly(peer)
    over = [n for n in lengths if n > SMALL_MAX_PDU]
    if over:
        raise CheckFailed(f"P-DATA-TF lengths {lengths} exceed our max PDU {SMALL_MAX_PDU}")
    if status != 0:
        raise CheckFailed(f"C-ECHO-RSP status 0x{status:04X} (lengths {lengths})")
    return (
        f"C-ECHO-RSP status 0x0000 in {len(lengths)} P-DATA-TF PDUs ({pdvs} PDVs) "
        f"of lengths {lengths}, all <= {SMALL_MAX_PDU}"
    )
