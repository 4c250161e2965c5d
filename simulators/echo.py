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

from simulators.pdus import AssociateRJ
from simulators.pynetdicom_race import reactor_parked

#: Exit status when the association was rejected (distinct from "echo failed").
EXIT_REJECTED = 2


@dataclass
class EchoResult:
    """Outcome of :func:`run_echoes`.

    ``rejection`` is set when the server answered A-ASSOCIATE-RJ;
    ``association_error`` when no association came about for another reason
    (refused connection, A-ABORT, timeout). ``failures`` has one line per
    echo that did not return Success (0x0000).
    """

    count: int
    succeeded: int = 0
    failures: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    rejection: AssociateRJ | None = None
    association_error: str | None = None

    @property
    def ok(self) -> bool:
        """True iff every requested echo succeeded."""
        return self.succeeded == self.count and self.rejection is None

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

    Args:
        max_pdu: our Maximum Length Received (PS3.8 D.1); 0 means unlimited.
        timeout: ACSE, DIMSE and network timeout in seconds, so a silent
            server cannot hang the caller.
        bind_address: local IP address to connect from (``127.0.0.2`` plays
            another host on loopback); None lets the kernel choose.
    """
    result = EchoResult(count=count)
    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(Verification)
    ae.maximum_pdu_size = max_pdu
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    assoc, rejection = _associate(ae, host, port, called_ae, bind_address)
    if not assoc.is_established:
        result.rejection = rejection
        if rejection is None:
            result.association_error = _why_not_established(assoc, rejection)
        result.failures.append(_why_not_established(assoc, rejection))
        return result
    try:
        start = time.monotonic()
        with reactor_parked(assoc):
            _echo_loop(assoc, count, result)
        result.elapsed = time.monotonic() - start
    finally:
        if assoc.is_established:
            assoc.release()
    return result


def _associate(
    ae: AE, host: str, port: int, called_ae: str, bind_address: str | None
) -> tuple[Any, AssociateRJ | None]:
    """``ae.associate`` that also returns the A-ASSOCIATE-RJ triple, if that was the answer.

    pynetdicom keeps the RJ's numbers only in its logs; an ACSE event handler
    catches the primitive on the way in.
    """
    rejection: list[AssociateRJ] = []
    aborts: list[Any] = []

    def on_pdu(event: Any) -> None:
        pdu = event.pdu
        if type(pdu).__name__ == "A_ASSOCIATE_RJ":
            rejection.append(AssociateRJ(pdu.result, pdu.source, pdu.reason_diagnostic))
        elif type(pdu).__name__ == "A_ABORT_RQ":
            aborts.append(pdu)

    assoc = ae.associate(
        host,
        port,
        ae_title=called_ae,
        bind_address=(bind_address or "", 0),
        evt_handlers=[(evt.EVT_PDU_RECV, on_pdu)],
    )
    # The A-ASSOCIATE-RJ PDU as it arrived, taken where pynetdicom decodes PDUs: its
    # requestor, when the RJ and the transport close come close together on a loaded machine,
    # sometimes ends as "aborted" although it received the RJ (seen in 2 of 3 CI runs); what
    # is judged here is the server's answer on the wire. An A-ABORT PDU from the server still
    # makes the answer no rejection.
    if rejection and not aborts and not assoc.is_established:
        return assoc, rejection[0]
    return assoc, None


def _why_not_established(assoc: Any, rejection: AssociateRJ | None) -> str:
    """The failure line for an association that did not come about."""
    if rejection is not None:
        return f"association rejected: {rejection}"
    if assoc.is_aborted:
        return "association aborted by the peer"
    return "association failed (connection refused or timed out)"


class HeldAssociation:
    """A well-behaved modality that associates and then stays, until told to leave.

    Policies are about associations that are *open* (max clients, multiple
    connections, pause): this keeps one open across the steps of a scenario,
    on pynetdicom's AE, and can echo on it or release it at any time. It sets
    no network timeout, so pynetdicom never drops an idle association itself.
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
        ae.acse_timeout = ae.dimse_timeout = timeout
        ae.network_timeout = None
        started = time.monotonic()
        self.assoc, self.rejection = _associate(ae, host, port, called_ae, bind_address)
        #: Seconds from the request to the answer (the AC, RJ or close).
        self.elapsed = time.monotonic() - started
        self.error = None if self.established else _why_not_established(self.assoc, self.rejection)

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
            _echo_loop(self.assoc, count, result)
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


def _echo_loop(assoc: Any, count: int, result: EchoResult) -> None:
    """Send ``count`` C-ECHOs on ``assoc``, recording each outcome in ``result``."""
    for number in range(1, count + 1):
        if not assoc.is_established:
            result.failures.append(f"echo {number}/{count}: association no longer established")
            continue
        status = assoc.send_c_echo(msg_id=number % 0x10000 or 1)
        if "Status" not in status:
            result.failures.append(f"echo {number}/{count}: no response (timeout or abort)")
        elif status.Status != 0x0000:
            result.failures.append(f"echo {number}/{count}: status 0x{status.Status:04X}")
        else:
            result.succeeded += 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m simulators echo``."""
    parser.add_argument("--host", required=True, help="server host name or IP address")
    parser.add_argument("--port", required=True, type=int, help="server TCP port")
    parser.add_argument("--called-ae", required=True, help="the server's AE title (called AE)")
    parser.add_argument(
        "--calling-ae", default="SIMECHO", help="our AE title (calling AE; default: %(default)s)"
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
        help="ACSE/DIMSE/network timeout in seconds (default: %(default)s)",
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

    0: all echoes succeeded; 2: association rejected; 1: anything else.
    """
    if not args.verbose:
        # pynetdicom logs rejections and aborts itself; our lines say the same in PS3.8 words.
        logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
    if args.count < 1:
        print("--count must be at least 1")
        return 1
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
    if result.rejection is not None:
        print(f"association rejected: {result.rejection}")
        return EXIT_REJECTED
    for line in result.failures:
        print(line)
    print(result.summary())
    return 0 if result.ok else 1
