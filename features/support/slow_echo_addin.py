"""A deliberately slow add-in: C-ECHO on a private SOP class, answered after ``DELAY_S`` seconds.

The timeouts feature drops this file into a server's ``addins/`` folder (rewriting the
``DELAY_S`` line) to play an add-in stuck on a slow disk, database or network. The add-in
timeout must answer the request with a failure status while the association carries on. The
SOP class is private (a UUID-derived ``2.25`` UID), so the shipped Verification add-in keeps
answering ordinary C-ECHOs on the same association; the scenario checks that too.
"""

from __future__ import annotations

import threading

from zope.interface import implementer

from pacsref.addin import SUCCESS, DimseRequest, IAddin, IEchoHandler, SupportedContext

#: Seconds each C-ECHO takes; the step that installs this file replaces the value.
DELAY_S = 5.0

#: A private SOP class that only this add-in serves (PS3.5 B.2: UUID-derived UID).
SLOW_SOP_CLASS = "2.25.171682155811274401271205248828269974100"

#: Implicit VR Little Endian, the transfer syntax every DICOM peer can use (PS3.5 10.1).
IMPLICIT_VR_LE = "1.2.840.10008.1.2"


@implementer(IAddin, IEchoHandler)
class SlowEchoAddin:
    """Serves C-ECHO on :data:`SLOW_SOP_CLASS`, slowly.

    Not ``@nonblocking``: it runs on the server's add-in thread pool like any add-in that
    does I/O, which is where the add-in timeout applies.
    """

    name = "slow-echo"
    description = "C-ECHO on a private SOP class, answered after DELAY_S seconds (tests)"

    def presentation_contexts(self) -> tuple[SupportedContext, ...]:
        """The private SOP class, SCP role, Implicit VR Little Endian."""
        return (SupportedContext(SLOW_SOP_CLASS, (IMPLICIT_VR_LE,)),)

    def handle_echo(self, request: DimseRequest) -> int:
        """Take ``DELAY_S`` seconds (a wait nobody ends), then answer Success."""
        threading.Event().wait(DELAY_S)
        return SUCCESS


#: The instance the loader picks up.
addin = SlowEchoAddin()
