"""A well-behaved Verification SCU: N C-ECHOs over one association, on pynetdicom's AE.

The simulator is deliberately *not* built on pacsref: a server judged only by
its own client code can share that code's misunderstandings of PS3.8/PS3.7.
pynetdicom is an independent implementation, so an echo that succeeds here is
evidence of interoperability rather than of self-consistency.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from simulators.options import ae_title
from simulators.pdus import Abort, AssociateRJ
from simulators.pynetdicom_race import reactor_parked

#: Exit status when the association was rejected: distinct from "echo failed" (1) and from
#: a command line that does not parse (2, argparse's usage error).
EXIT_REJECTED = 3


@dataclass
class EchoResult:
    """Outcome of :func:`run_echoes`.

    ``rejection`` is set when the server answered A-ASSOCIATE-RJ;
    ``association_error`` when no association came about for another reason
    (refused connection, A-ABORT, timeout). ``release_error`` is set when an
    association of :func:`run_echoes` did not end in A-RELEASE-RP: a server
    that aborts or hangs up instead of releasing is misbehaving even if every
    echo succeeded. ``failures`` has one line per echo that did not return
    Success (0x0000), except that the echoes left unsent once the association
    was gone share one line, plus one line for a failed release.
    """

    count: int
    succeeded: int = 0
    failures: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    rejection: AssociateRJ | None = None
    association_error: str | None = None
    release_error: str | None = None

    @property
    def ok(self) -> bool:
        """True iff every requested echo succeeded and no release went wrong."""
        return (
            self.succeeded == self.count and self.rejection is None and self.release_error is None
        )

    @property
    def rate(self) -> float:
        """Successful echoes per second over the echo loop (0 if nothing was timed)."""
        return self.succeeded / self.elapsed if self.elapsed > 0 else 0.0

    def summary(self) -> str:
        """The CLI's summary line."""
        return f"{self.count} echoes, {self.succeeded} succeeded, rate {self.rate:.1f}/s"


def run_echoes(
    host: str,
    port: int,
    called_ae: str,
    calling_ae: str = "SIMECHO",
    count: int = 1,
    *,
    max_pdu: int = 16382,
    timeout: float = 30.0,
    bind_address: str | None = None,
) -> EchoResult:
    """Associate, send ``count`` C-ECHO-RQs one after another, release; report each outcome.

    The result is ok only if the release ended in A-RELEASE-RP (``assoc.is_released``).

    Args:
        max_pdu: our Maximum Length Received (PS3.8 D.1); 0 means unlimited.
        timeout: TCP connect, ACSE, DIMSE and network timeout in seconds, so
            neither a silent server nor an unanswered connect can hang the caller.
        bind_address: local IP address to connect from (``127.0.0.2`` plays
            another host on loopback); None lets the kernel choose.
    """
    result = EchoResult(count=count)
    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(Verification)
    ae.maximum_pdu_size = max_pdu
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.connection_timeout = timeout
    assoc, rejection, heard = _associate(ae, host, port, called_ae, bind_address)
    if not assoc.is_established:
        result.rejection = rejection
        if rejection is None:
            result.association_error = _why_not_established(rejection, heard)
        result.failures.append(_why_not_established(rejection, heard))
        return result
    try:
        start = time.monotonic()
        with reactor_parked(assoc):
            _echo_loop(assoc, count, result, heard.aborts)
        result.elapsed = time.monotonic() - start
    finally:
        result.release_error = _release(assoc, heard.aborts)
        if result.release_error is not None:
            result.failures.append(f"release: {result.release_error}")
    return result


def _release(assoc: Any, aborts: list[Abort]) -> str | None:
    """Release ``assoc``; None if it ended in A-RELEASE-RP, else what happened instead.

    pynetdicom's ``release()`` returns nothing and leaves ``is_released`` False
    whether the server aborted, hung up or stayed silent; the A-ABORT PDUs seen
    by :func:`_associate`'s handler and the time taken tell those apart.
    """
    gone = _association_gone(assoc, aborts)
    if gone is not None:
        return f"not attempted: {gone}"
    started = time.monotonic()
    assoc.release()
    waited = time.monotonic() - started
    if assoc.is_released:
        return None
    if aborts:
        return f"the server answered A-RELEASE-RQ with {aborts[-1]}"
    limit = assoc.acse_timeout
    if limit is not None and waited >= limit:
        return f"no A-RELEASE-RP within the ACSE timeout ({limit:g} s)"
    return "the server closed the connection without A-RELEASE-RP"


@dataclass
class _Heard:
    """What pynetdicom keeps to its logs about an association, caught by event handlers.

    It reports an A-ABORT with source 2 as an A-P-ABORT, like a dropped
    connection, and marks a refused or timed-out connect as aborted too, so the
    server's own PDUs and the connection event are what tell these apart.
    """

    rejections: list[AssociateRJ] = field(default_factory=list)
    #: Every A-ABORT PDU from the server, for the association's whole life.
    aborts: list[Abort] = field(default_factory=list)
    #: True once the TCP connection was established.
    connected: bool = False


def _associate(
    ae: AE, host: str, port: int, called_ae: str, bind_address: str | None
) -> tuple[Any, AssociateRJ | None, _Heard]:
    """``ae.associate`` that also returns the A-ASSOCIATE-RJ triple, if that was the answer,
    and a :class:`_Heard` that keeps collecting the server's A-ABORT PDUs afterwards."""
    heard = _Heard()

    def on_pdu(event: Any) -> None:
        pdu = event.pdu
        if type(pdu).__name__ == "A_ASSOCIATE_RJ":
            heard.rejections.append(AssociateRJ(pdu.result, pdu.source, pdu.reason_diagnostic))
        elif type(pdu).__name__ == "A_ABORT_RQ":
            heard.aborts.append(Abort(pdu.source, pdu.reason_diagnostic))

    def on_connected(event: Any) -> None:
        heard.connected = True

    assoc = ae.associate(
        host,
        port,
        ae_title=called_ae,
        bind_address=(bind_address or "", 0),
        evt_handlers=[(evt.EVT_PDU_RECV, on_pdu), (evt.EVT_CONN_OPEN, on_connected)],
    )
    # The A-ASSOCIATE-RJ PDU as it arrived, taken where pynetdicom decodes PDUs: its
    # requestor, when the RJ and the transport close come close together on a loaded machine,
    # sometimes ends as "aborted" although it received the RJ (seen in 2 of 3 CI runs); what
    # is judged here is the server's answer on the wire. An A-ABORT PDU from the server still
    # makes the answer no rejection.
    if heard.rejections and not heard.aborts and not assoc.is_established:
        return assoc, heard.rejections[0], heard
    return assoc, None, heard


def _why_not_established(rejection: AssociateRJ | None, heard: _Heard) -> str:
    """The failure line for an association that did not come about."""
    if rejection is not None:
        return f"association rejected: {rejection}"
    if heard.aborts:
        return f"association aborted by the peer: {heard.aborts[0]}"
    if not heard.connected:
        return "association failed: TCP connect refused or timed out"
    return "association failed: no answer to A-ASSOCIATE-RQ (ACSE timeout or connection closed)"


class HeldAssociation:
    """A well-behaved modality that associates and then stays, until told to leave.

    Policies are about associations that are *open* (max clients, multiple
    connections, pause): this keeps one open across the steps of a scenario,
    on pynetdicom's AE, and can echo on it or release it at any time. It sets
    no network timeout, so pynetdicom never drops an idle association itself;
    ``timeout`` bounds the TCP connect and each ACSE and DIMSE wait.
    """

    def __init__(
        self,
        host: str,
        port: int,
        called_ae: str,
        calling_ae: str,
        *,
        timeout: float = 10.0,
        bind_address: str | None = None,
    ) -> None:
        self.calling_ae = calling_ae
        ae = AE(ae_title=calling_ae)
        ae.add_requested_context(Verification)
        ae.acse_timeout = ae.dimse_timeout = ae.connection_timeout = timeout
        ae.network_timeout = None
        started = time.monotonic()
        self.assoc, self.rejection, self._heard = _associate(
            ae, host, port, called_ae, bind_address
        )
        #: Seconds from the request to the answer (the AC, RJ or close).
        self.elapsed = time.monotonic() - started
        self.error = None if self.established else _why_not_established(self.rejection, self._heard)

    @property
    def established(self) -> bool:
        """True while the association is open."""
        return bool(self.assoc.is_established)

    def echo(self, count: int = 1) -> EchoResult:
        """Send ``count`` C-ECHOs on the held association."""
        result = EchoResult(count=count, rejection=self.rejection)
        if not self.established:
            result.association_error = self.error or "association no longer established"
            result.failures.append(result.association_error)
            return result
        start = time.monotonic()
        with reactor_parked(self.assoc):
            _echo_loop(self.assoc, count, result, self._heard.aborts)
        result.elapsed = time.monotonic() - start
        return result

    def release(self) -> bool:
        """Release the association (A-RELEASE-RQ/RP); True if it was open and is now released."""
        if not self.established:
            return False
        self.assoc.release()
        return bool(self.assoc.is_released)

    def abort(self) -> None:
        """Drop the association without ceremony (A-ABORT); used to clean up."""
        if self.established:
            self.assoc.abort()


def _echo_loop(assoc: Any, count: int, result: EchoResult, aborts: list[Abort]) -> None:
    """Send ``count`` C-ECHOs on ``assoc``, recording each outcome in ``result``.

    Stops at the first echo without a response, or before a send once the
    association is gone. With the reactor parked (:func:`reactor_parked`)
    pynetdicom does not notice the server's A-ABORT or close between requests:
    it would queue each remaining echo to a dead connection and wait a whole
    DIMSE timeout for its answer. ``aborts`` is the live list of :class:`_Heard`.
    """
    for number in range(1, count + 1):
        gone = _association_gone(assoc, aborts)
        if gone is not None:
            result.failures.append(_unsent(number, count, gone))
            return
        started = time.monotonic()
        status = assoc.send_c_echo(msg_id=number % 0x10000 or 1)
        if "Status" not in status:
            why = _why_no_response(assoc, aborts, time.monotonic() - started)
            result.failures.append(f"echo {number}/{count}: no response: {why}")
            if number < count:
                result.failures.append(_unsent(number + 1, count, "an echo went unanswered"))
            return
        if status.Status != 0x0000:
            result.failures.append(f"echo {number}/{count}: status 0x{status.Status:04X}")
        else:
            result.succeeded += 1


def _association_gone(assoc: Any, aborts: list[Abort]) -> str | None:
    """Why no request can go out on ``assoc`` any more, or None while one can."""
    if aborts:
        return f"the server aborted the association ({aborts[-1]})"
    if not assoc.is_established:
        return "the association is no longer established"
    if not assoc.dul.is_alive():
        return "the connection is closed"
    return None


def _why_no_response(assoc: Any, aborts: list[Abort], waited: float) -> str:
    """Why ``send_c_echo`` came back empty: the server's A-ABORT, a close, or our timeout.

    pynetdicom wakes a waiting request at once when the connection ends, so a
    wait as long as the DIMSE timeout means nothing came (and pynetdicom has
    aborted the association itself).
    """
    if aborts:
        return f"the server aborted the association: {aborts[-1]}"
    limit = assoc.dimse_timeout
    if limit is not None and waited >= limit:
        return f"nothing within the DIMSE timeout ({limit:g} s); the association was aborted"
    return "the connection closed without an A-ABORT from the server"


def _unsent(first: int, count: int, why: str) -> str:
    """The one failure line for echoes ``first`` to ``count``, never sent."""
    which = f"echo {count}/{count}" if first == count else f"echoes {first}-{count}/{count}"
    return f"{which}: not sent: {why}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m simulators echo``."""
    parser.add_argument("--host", required=True, help="server host name or IP address")
    parser.add_argument("--port", required=True, type=int, help="server TCP port")
    parser.add_argument(
        "--called-ae", required=True, type=ae_title, help="the server's AE title (called AE)"
    )
    parser.add_argument(
        "--calling-ae",
        default="SIMECHO",
        type=ae_title,
        help="our AE title (calling AE; default: %(default)s)",
    )
    parser.add_argument(
        "--count", type=int, default=1, help="C-ECHOs to send on one association (default: 1)"
    )
    parser.add_argument(
        "--max-pdu",
        type=int,
        default=16382,
        help="our Maximum Length Received in bytes, 0 = unlimited (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="TCP connect/ACSE/DIMSE/network timeout in seconds (default: %(default)s)",
    )
    parser.add_argument(
        "--bind-address",
        default=None,
        metavar="IP",
        help="local IP address to connect from, e.g. 127.0.0.2 to play another host on loopback",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show pynetdicom's own log messages"
    )


def main(args: argparse.Namespace) -> int:
    """Run the echoes, print one line per failure and the summary; return the exit status.

    0: all echoes succeeded and the association was released (A-RELEASE-RP);
    2: association rejected; 1: anything else, including a ValueError (e.g. an
    AE title given in code rather than through the parser) printed as one line.
    """
    if not args.verbose:
        # pynetdicom logs rejections and aborts itself; our lines say the same in PS3.8 words.
        logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
    if args.count < 1:
        print("--count must be at least 1")
        return 1
    try:
        result = run_echoes(
            args.host,
            args.port,
            args.called_ae,
            args.calling_ae,
            args.count,
            max_pdu=args.max_pdu,
            timeout=args.timeout,
            bind_address=args.bind_address,
        )
    except ValueError as exc:
        print(f"ValueError: {exc}")
        return 1
    if result.rejection is not None:
        print(f"association rejected: {result.rejection}")
        return EXIT_REJECTED
    for line in result.failures:
        print(line)
    print(result.summary())
    return 0 if result.ok else 1
