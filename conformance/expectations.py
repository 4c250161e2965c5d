"""What the operator says a server is configured to do: the policy suite's expectations.

The association policy suite can judge any SCP, but "is this refusal right?" depends on how
that SCP is configured (is anonymous access allowed? how many clients?). The operator states
it on the command line, ``--expect allow-anonymous=false,max-clients=3,known-ae=CT@127.0.0.1``,
and every check whose expectation is not stated is skipped with a reason rather than guessed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

__all__ = ["EXPECTATION_HELP", "Expectations", "KnownAe", "parse_expectations"]

#: One line per key, for ``--help``.
EXPECTATION_HELP = {
    "allow-anonymous": "true|false: unregistered calling AE titles are accepted",
    "known-ae": "NAME@IP: a calling AE title registered at that address (repeatable)",
    "max-clients": "N: associations served at once; one more gets (2, 3, 2)",
    "multiple-connections": "true|false: one AE title may associate twice from one IP",
    "multiple-connections-reject": "R/S/REASON: the exact A-ASSOCIATE-RJ for a second "
    "association (default: any transient one, result 2)",
    "paused": "true|false: the server is paused now (new associations get (2, 3, 1))",
    "check-called-ae": "true|false: a wrong called AE title is refused (default true)",
    "other-ip": "IP: a local address to play 'another host' (default 127.0.0.2 when the "
    "target is on loopback)",
}


@dataclass(frozen=True)
class KnownAe:
    """A calling AE title the server has registered, and the address it is registered at."""

    ae_title: str
    ip: str

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.ip}"


@dataclass(frozen=True)
class Expectations:
    """The server's configuration as far as the policy checks need it; None = not stated."""

    allow_anonymous: bool | None = None
    max_clients: int | None = None
    multiple_connections: bool | None = None
    multiple_connections_reject: tuple[int, int, int] | None = None
    paused: bool | None = None
    check_called_ae: bool = True
    known_aes: tuple[KnownAe, ...] = field(default_factory=tuple)
    other_ip: str | None = None

    def describe(self) -> str:
        """The stated expectations, as they would be written on the command line."""
        parts = []
        for name in ("allow_anonymous", "max_clients", "multiple_connections", "paused"):
            value = getattr(self, name)
            if value is not None:
                shown = str(value).lower() if isinstance(value, bool) else str(value)
                parts.append(f"{name.replace('_', '-')}={shown}")
        if self.multiple_connections_reject is not None:
            parts.append(
                "multiple-connections-reject="
                + "/".join(str(n) for n in self.multiple_connections_reject)
            )
        if not self.check_called_ae:
            parts.append("check-called-ae=false")
        parts += [f"known-ae={known}" for known in self.known_aes]
        if self.other_ip is not None:
            parts.append(f"other-ip={self.other_ip}")
        return ",".join(parts) or "(none)"


def _bool(key: str, text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "on", "1"):
        return True
    if lowered in ("false", "no", "off", "0"):
        return False
    raise ValueError(f"{key}={text}: expected true or false")


def _ip(key: str, text: str) -> str:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise ValueError(f"{key}={text}: expected an IP address") from None


def _known(text: str) -> KnownAe:
    title, at, ip = text.rpartition("@")
    if not at or not title.strip():
        raise ValueError(f"known-ae={text}: expected NAME@IP")
    if len(title.strip()) > 16:
        raise ValueError(f"known-ae={text}: an AE title has at most 16 characters")
    return KnownAe(title.strip(), _ip("known-ae", ip))


def _triple(text: str) -> tuple[int, int, int]:
    parts = text.split("/")
    try:
        numbers = tuple(int(part) for part in parts)
    except ValueError:
        numbers = ()
    if len(numbers) != 3:
        raise ValueError(f"multiple-connections-reject={text}: expected R/S/REASON, e.g. 2/3/2")
    return numbers  # type: ignore[return-value]


def parse_expectations(items: Iterable[str]) -> Expectations:
    """Parse ``--expect`` values: each is ``key=value`` pairs separated by commas.

    Raises:
        ValueError: naming the key or value that is wrong and what is allowed.
    """
    result = Expectations()
    for item in items:
        for pair in filter(None, (part.strip() for part in item.split(","))):
            key, sep, value = pair.partition("=")
            key = key.strip().lower()
            if not sep:
                raise ValueError(f"{pair!r}: expected key=value")
            if key == "allow-anonymous":
                result = replace(result, allow_anonymous=_bool(key, value))
            elif key == "max-clients":
                if not value.strip().isdigit() or int(value) < 1:
                    raise ValueError(f"max-clients={value}: expected a positive integer")
                result = replace(result, max_clients=int(value))
            elif key == "multiple-connections":
                result = replace(result, multiple_connections=_bool(key, value))
            elif key == "multiple-connections-reject":
                result = replace(result, multiple_connections_reject=_triple(value))
            elif key == "paused":
                result = replace(result, paused=_bool(key, value))
            elif key == "check-called-ae":
                result = replace(result, check_called_ae=_bool(key, value))
            elif key == "known-ae":
                result = replace(result, known_aes=(*result.known_aes, _known(value)))
            elif key == "other-ip":
                result = replace(result, other_ip=_ip(key, value))
            else:
                raise ValueError(
                    f"unknown expectation {key!r}; known: {', '.join(EXPECTATION_HELP)}"
                )
    return result
