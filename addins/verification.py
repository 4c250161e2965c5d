"""Verification SOP Class SCP: answers C-ECHO (PS3.4 Annex A, PS3.7 9.1.5).

A shipped add-in, copied into a server's ``addins/`` folder by
``pacsref server add``. Self-contained: it imports only the public
``pacsref.addin`` API, so it doubles as the smallest example of an add-in.
"""

from __future__ import annotations

from zope.interface import implementer

from pacsref.addin import (
    SUCCESS,
    DimseRequest,
    IAddin,
    IEchoHandler,
    SupportedContext,
    nonblocking,
)

#: Verification SOP Class (PS3.4 A.4).
VERIFICATION_SOP_CLASS = "1.2.840.10008.1.1"

#: Every transfer syntax a peer may reasonably propose for C-ECHO, in our order
#: of preference. C-ECHO carries no data set, so any of them works; accepting
#: all spares a peer that offers only one of them a rejected context.
TRANSFER_SYNTAXES = (
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired, still proposed by old peers)
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
)


@implementer(IAddin, IEchoHandler)
class VerificationAddin:
    """Accepts the Verification SOP Class as SCP and answers every C-ECHO with success."""

    name = "verification"
    description = "Verification SOP Class SCP: answers C-ECHO with success"

    def presentation_contexts(self) -> tuple[SupportedContext, ...]:
        """One context: Verification, SCP role, the four transfer syntaxes above."""
        return (SupportedContext(VERIFICATION_SOP_CLASS, TRANSFER_SYNTAXES),)

    @nonblocking
    def handle_echo(self, request: DimseRequest) -> int:
        """Success: reaching this add-in already proves the association works (PS3.4 A.4).

        Marked nonblocking: it only returns a constant, so it runs on the
        reactor thread instead of paying two thread hand-offs per echo.
        """
        return SUCCESS


#: The instance the loader picks up.
addin = VerificationAddin()
