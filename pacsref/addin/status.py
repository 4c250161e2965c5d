"""The few DIMSE status codes the add-in API itself speaks (PS3.7 Annex C).

Service-specific statuses (e.g. 0xA700 *Refused: Out of Resources* for
C-STORE) belong to the add-ins that return them; only the general ones every
service shares, and which the framework produces on an add-in's behalf, are
named here.
"""

from __future__ import annotations

__all__ = ["CANCEL", "PENDING", "PENDING_WARNING", "PROCESSING_FAILURE", "SUCCESS"]

#: Success (PS3.7 Annex C, success class).
SUCCESS = 0x0000

#: Pending: more responses follow (C-FIND/C-MOVE/C-GET; PS3.7 Annex C).
PENDING = 0xFF00

#: Pending, with one or more Optional Keys not supported (PS3.4 C.4.1.1.4).
PENDING_WARNING = 0xFF01

#: Cancel: the operation was stopped by a C-CANCEL (PS3.7 Annex C).
CANCEL = 0xFE00

#: Processing failure: a general failure valid for every DIMSE service (PS3.7 Annex C).
PROCESSING_FAILURE = 0x0110
