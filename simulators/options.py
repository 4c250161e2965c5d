"""Command-line argument types shared by ``python -m simulators echo`` and ``raw``.

An AE title that cannot go on the wire should be refused by the parser, naming
the option and the rule, rather than surface later as a traceback from the PDU
encoder or from pynetdicom.
"""

from __future__ import annotations

import argparse

#: The AE value representation (PS3.5 Table 6.2-1) in one line, for messages.
AE_TITLE_RULE = (
    "an AE title is 1-16 printable ASCII characters, without a backslash, and not all spaces"
)


def ae_title_problem(title: str) -> str | None:
    """What keeps ``title`` from being an AE title (PS3.5 Table 6.2-1), or None if nothing.

    The AE VR is 16 bytes of the default character repertoire without control
    characters or backslash (5CH); a value of spaces only shall not be used.
    """
    if not title:
        return "it is empty"
    if len(title) > 16:
        return f"it is {len(title)} characters long"
    if "\\" in title:
        return "it contains a backslash"
    if any(not " " <= char <= "~" for char in title):
        return "it contains a character that is not printable ASCII"
    if not title.strip(" "):
        return "it is all spaces"
    return None


def ae_title(value: str) -> str:
    """argparse ``type=`` for an AE title option; argparse prefixes the option's name."""
    problem = ae_title_problem(value)
    if problem is not None:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a valid AE title: {problem}; {AE_TITLE_RULE}"
        )
    return value
