"""Property tests: random and mutated PDUs never escape as anything but Evt19.

Whatever bytes a peer sends, the machine must return effects (usually an
A-ABORT and a wait for close) and never raise: an exception here would
escape into the reactor.
"""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from pacsref.ul import codec
from pacsref.ul.constants import Role
from pacsref.ul.effects import SendPDU
from pacsref.ul.errors import MalformedPDU
from pacsref.ul.machine import UpperLayer
from pacsref.ul.states import State

from .helpers import AC_PDU, P_DATA_PDU, RQ_PDU

SAMPLES = [RQ_PDU, AC_PDU, P_DATA_PDU, codec.RELEASE_RQ]


@st.composite
def mutated_pdus(draw: st.DrawFn) -> bytes:
    """A valid PDU with a few bytes flipped, truncated or extended."""
    data = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(1, 6))):
        position = draw(st.integers(0, len(data) - 1))
        data[position] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data) + draw(st.binary(max_size=16))


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.binary(max_size=300), mutated_pdus()), st.integers(1, 50))
def test_acceptor_never_raises(data: bytes, chunk: int) -> None:
    """Any byte stream into a listening acceptor yields effects, never an exception."""
    ul = UpperLayer(Role.ACCEPTOR)
    ul.connection_made()
    for start in range(0, len(data), chunk):
        ul.receive_data(data[start : start + chunk])
    assert isinstance(ul.state, State)


@settings(max_examples=300, deadline=None)
@given(mutated_pdus())
def test_established_association_answers_garbage_with_abort(data: bytes) -> None:
    """In Sta6, input that does not decode ends in an A-ABORT, never an exception."""
    ul = UpperLayer(Role.ACCEPTOR)
    ul.state = State.Sta6
    effects = ul.receive_data(data)
    if ul.state is State.Sta13:
        assert any(isinstance(e, SendPDU) for e in effects)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400))
def test_decoders_raise_only_malformed_pdu(body: bytes) -> None:
    """Every body decoder raises MalformedPDU or returns a value, whatever the input."""
    for decode in (
        codec.decode_associate_rq,
        codec.decode_associate_ac,
        codec.decode_p_data,
    ):
        with contextlib.suppress(MalformedPDU):
            decode(body)
    for decode in (codec.decode_associate_rj, codec.decode_abort):
        with contextlib.suppress(MalformedPDU):
            decode(body[:4].ljust(4, b"\0"))
