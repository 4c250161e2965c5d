"""What this server supports, as presentation-context building blocks.

Add-ins declare the SOP classes (abstract syntaxes) they serve as
:class:`SupportedContext` values; the server folds all declarations into one
:class:`ContextTable` that :func:`pacsref.association.negotiation.negotiate`
consults for every A-ASSOCIATE-RQ (PS3.8 9.3.2.2, PS3.7 Annex D.3.2).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from pydicom.uid import UID

from pacsref.ul.constants import IMPLICIT_VR_LITTLE_ENDIAN

_UID_CHARS = frozenset("0123456789.")

#: Explicit VR Little Endian (PS3.5 A.2).
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"

#: A sensible preference for uncompressed data: explicit VR first, because
#: with the VR on the wire private and unknown elements survive decoding and
#: re-encoding without a data dictionary (PS3.5 7.1.2 vs 7.1.3); implicit VR
#: little endian last as the default every DICOM application must support
#: (PS3.5 10.1).
UNCOMPRESSED_TRANSFER_SYNTAXES: tuple[str, ...] = (
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
)


def is_uid(value: str) -> bool:
    """True if ``value`` has the shape of a UID (PS3.5 9.1: digits and dots, 1-64 chars).

    Only the shape is checked: negotiation compares UIDs as strings, so this
    guards what we *send*, not what a peer may propose.
    """
    return bool(value) and len(value) <= 64 and set(value) <= _UID_CHARS


def check_uid(what: str, value: str) -> None:
    """Raise ``ValueError`` naming ``what`` unless ``value`` is UID-shaped."""
    if not is_uid(value):
        raise ValueError(f"{what} {value!r} is not a UID (digits and dots, 1-64 characters)")


#: How much of a proposed name that is not a UID a log line quotes.
_LABEL_MAX = 70


def uid_label(uid: str) -> str:
    """``'CT Image Storage (1.2.840...)'`` for registered UIDs, else the UID itself.

    Log lines about refused contexts are read by people configuring peers;
    a name is far quicker to act on than a bare dotted number.
    """
    if not is_uid(uid):
        # A peer's non-UID name can be 65535 bytes (PS3.8 item length): name its start.
        if len(uid) > _LABEL_MAX:
            return f"{uid[:_LABEL_MAX]!r}... ({len(uid)} characters)"
        return repr(uid)
    name = UID(uid).name
    return uid if name == uid else f"{name} ({uid})"


@dataclass(frozen=True, slots=True)
class SupportedContext:
    """One abstract syntax this server can negotiate, as declared by an add-in.

    ``transfer_syntaxes`` is in *our* order of preference: when a proposal
    offers several that we support, the first of ours wins (see
    :func:`~pacsref.association.negotiation.negotiate`).

    ``scp_role``/``scu_role`` are *our* roles (PS3.7 D.3.3.4): ``scp_role``
    means we perform the service for the peer (the default role split:
    requestor SCU, acceptor SCP); ``scu_role`` means we may invoke operations
    on this SOP class over an association the peer opened, e.g. the C-STORE
    sub-operations of a C-GET (PS3.4 C.4.3), which requires the peer to have
    proposed the SCP role for it by SCP/SCU Role Selection.
    """

    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]
    scp_role: bool = True
    scu_role: bool = False

    def __post_init__(self) -> None:
        check_uid("abstract syntax", self.abstract_syntax)
        # Accept any iterable (a list is the natural thing to write in an
        # add-in) but store a tuple so the value stays hashable and immutable.
        syntaxes = tuple(dict.fromkeys(self.transfer_syntaxes))
        if not syntaxes:
            raise ValueError(f"{self.abstract_syntax}: at least one transfer syntax is required")
        for ts in syntaxes:
            check_uid("transfer syntax", ts)
        if not (self.scp_role or self.scu_role):
            raise ValueError(
                f"{self.abstract_syntax}: a supported context must allow the SCP or the SCU role"
            )
        object.__setattr__(self, "transfer_syntaxes", syntaxes)

    def merged_with(self, other: SupportedContext) -> SupportedContext:
        """Union of two declarations of the same abstract syntax.

        Transfer syntaxes keep first-seen preference (``self`` first, then what
        ``other`` adds); roles are OR-ed, since either add-in can serve its role.
        """
        if other.abstract_syntax != self.abstract_syntax:
            raise ValueError(f"cannot merge {self.abstract_syntax} with {other.abstract_syntax}")
        return SupportedContext(
            self.abstract_syntax,
            self.transfer_syntaxes + other.transfer_syntaxes,
            scp_role=self.scp_role or other.scp_role,
            scu_role=self.scu_role or other.scu_role,
        )


class ContextTable:
    """The merged :class:`SupportedContext` declarations, keyed by abstract syntax.

    Several add-ins may declare the same SOP class (say a storage add-in as
    SCP and a C-GET add-in as SCU for CT Image Storage); negotiation needs a
    single answer per abstract syntax, so declarations are merged in the
    order given (see :meth:`SupportedContext.merged_with`). Immutable once built.
    """

    __slots__ = ("_by_syntax", "_fallback")

    def __init__(
        self,
        contexts: Iterable[SupportedContext] = (),
        fallback: Callable[[str], SupportedContext | None] | None = None,
    ) -> None:
        by_syntax: dict[str, SupportedContext] = {}
        for ctx in contexts:
            known = by_syntax.get(ctx.abstract_syntax)
            by_syntax[ctx.abstract_syntax] = ctx if known is None else known.merged_with(ctx)
        self._by_syntax = by_syntax
        self._fallback = fallback

    def get(self, abstract_syntax: str) -> SupportedContext | None:
        """The merged declaration for ``abstract_syntax``, or None if unsupported.

        An abstract syntax nobody declared is offered to ``fallback`` (if any), but
        only when it is UID-shaped: a storage add-in accepting "any other storage SOP
        class" must never accept garbage. Iteration and ``in`` see declared ones only.
        """
        found = self._by_syntax.get(abstract_syntax)
        if found is None and self._fallback is not None and is_uid(abstract_syntax):
            return self._fallback(abstract_syntax)
        return found

    def __getitem__(self, abstract_syntax: str) -> SupportedContext:
        return self._by_syntax[abstract_syntax]

    def __contains__(self, abstract_syntax: object) -> bool:
        return abstract_syntax in self._by_syntax

    def __iter__(self) -> Iterator[SupportedContext]:
        return iter(self._by_syntax.values())

    def __len__(self) -> int:
        return len(self._by_syntax)

    @property
    def abstract_syntaxes(self) -> tuple[str, ...]:
        """Every supported abstract syntax, in first-declared order."""
        return tuple(self._by_syntax)

    def __repr__(self) -> str:
        return f"ContextTable({list(self._by_syntax.values())!r})"
