"""Passcode hashes of the users add-in: scrypt (RFC 7914) with its parameters in the string.

A hash string reads ``scrypt$N$r$p$<salt>$<hash>``: the scrypt cost N, block size r and
parallelism p in decimal, then salt and derived key in standard base64. The parameters
travel with each hash, so the defaults below can be raised later without invalidating the
accounts already written: every hash is checked with the parameters it was made with.

Why scrypt: it is in the standard library (``hashlib.scrypt``, from OpenSSL), and it is
memory-hard, so guessing passcodes from a stolen accounts file costs memory as well as time.

Why these defaults: a hash is checked once per association that offers a passcode, on the
add-in thread pool, so it must stay cheap next to the association itself while being
expensive to guess at. Measured on the development machine (AMD EPYC, 2 vCPUs shared with
other jobs, Python 3.11.7): N = 2**13, r = 8, p = 1 (8 MiB) costs 25-32 ms of CPU per check
(median of 30; 23-49 ms wall clock); N = 2**14 costs 45-57 ms of CPU and up to 110 ms wall
clock there, past a 10-50 ms budget per association. Raise N when the hardware allows.

Some passcodes verify as others, inherently: scrypt begins with PBKDF2-HMAC-SHA256 keyed
by the passcode, and HMAC pads a key shorter than its 64-byte block with zero bytes and
replaces a longer one by its SHA-256. So ``secret\0`` (any number of trailing NUL bytes)
verifies as ``secret``, and a passcode over 64 bytes is also matched by the 32 bytes of its
SHA-256 digest. Neither gives a guesser anything: each guess still costs a full scrypt, and
finding the equivalent of a passcode takes knowing the passcode (or, for a long one, a digest
no easier to guess than the passcode). It is the same in every scrypt and PBKDF2 library,
and changing it would make these hashes unlike everyone else's scrypt.

Limits on what a hash string may ask for (:data:`MAX_MEMORY`, :data:`MAX_WORK`, the ranges in
:func:`parse_hash`) exist because the accounts file is edited by hand: a mistyped N must not
make every association allocate gigabytes or keep a pool thread busy for minutes (the add-in
timeout stops waiting for it, but cannot stop the thread).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from dataclasses import dataclass, field

__all__ = [
    "DEFAULT_N",
    "DEFAULT_P",
    "DEFAULT_R",
    "MAX_MEMORY",
    "MAX_WORK",
    "SCHEME",
    "PasscodeHash",
    "hash_passcode",
    "parse_hash",
]

SCHEME = "scrypt"
#: Defaults for new hashes; see the module docstring for the measured cost.
DEFAULT_N = 2**13
DEFAULT_R = 8
DEFAULT_P = 1
SALT_BYTES = 16
KEY_BYTES = 32
#: Most memory one check may take (scrypt needs 128 * r * N bytes).
MAX_MEMORY = 256 * 1024 * 1024
#: Most work one check may take, as N * r * p: 64 times the defaults' (about 1.6 s here).
MAX_WORK = 64 * DEFAULT_N * DEFAULT_R * DEFAULT_P

_NUMBER = re.compile(r"[1-9][0-9]{0,9}")


@dataclass(frozen=True, slots=True)
class PasscodeHash:
    """One parsed hash string; :meth:`verify` checks a passcode against it.

    Salt and key are kept out of ``repr``: they are not the passcode, but a log line is no
    place for material that helps guess it.
    """

    n: int
    r: int
    p: int
    salt: bytes = field(repr=False)
    key: bytes = field(repr=False)

    def verify(self, passcode: bytes) -> bool:
        """True when ``passcode`` derives this key; compared in constant time."""
        derived = _scrypt(passcode, self.salt, self.n, self.r, self.p, len(self.key))
        return hmac.compare_digest(derived, self.key)

    def __str__(self) -> str:
        """The hash string, as the accounts file holds it."""
        salt = base64.b64encode(self.salt).decode("ascii")
        key = base64.b64encode(self.key).decode("ascii")
        return f"{SCHEME}${self.n}${self.r}${self.p}${salt}${key}"


def _scrypt(passcode: bytes, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    # OpenSSL refuses more than 32 MiB unless told; its need is 128 * r * (N + p + 2) bytes.
    maxmem = 128 * r * (n + p + 2) + 1024 * 1024
    return hashlib.scrypt(passcode, salt=salt, n=n, r=r, p=p, maxmem=maxmem, dklen=length)


def hash_passcode(
    passcode: bytes,
    n: int = DEFAULT_N,
    r: int = DEFAULT_R,
    p: int = DEFAULT_P,
    salt: bytes | None = None,
) -> str:
    """The hash string of ``passcode`` with a fresh random salt (unless one is given).

    Raises:
        ValueError: the parameters are outside what :func:`parse_hash` accepts, so the
            string could never be used.
    """
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    key = _scrypt(passcode, salt, n, r, p, KEY_BYTES)
    text = str(PasscodeHash(n, r, p, salt, key))
    parse_hash(text)
    return text


def _number(text: str, what: str, low: int, high: int) -> int:
    if not _NUMBER.fullmatch(text):
        raise ValueError(f"{what} is not a decimal number")
    value = int(text)
    if not low <= value <= high:
        raise ValueError(f"{what} {value} is not from {low} to {high}")
    return value


def _base64(text: str, what: str, low: int, high: int) -> bytes:
    try:
        value = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"the {what} is not base64") from None
    if not low <= len(value) <= high:
        raise ValueError(f"the {what} has {len(value)} bytes, not {low} to {high}")
    return value


def parse_hash(text: str) -> PasscodeHash:
    """The hash that ``text`` spells.

    Raises:
        ValueError: saying what is wrong, never quoting ``text`` (it may be a passcode
            someone wrote in plain text by mistake).
    """
    fields = text.split("$")
    if len(fields) != 6 or fields[0] != SCHEME:
        raise ValueError(f"not of the form {SCHEME}$N$r$p$<salt base64>$<hash base64>")
    n = _number(fields[1], "N", 2, 2**24)
    if n & (n - 1):
        raise ValueError(f"N {n} is not a power of two")
    r = _number(fields[2], "r", 1, 64)
    p = _number(fields[3], "p", 1, 16)
    if 128 * r * n > MAX_MEMORY:
        raise ValueError(f"N and r ask for {128 * r * n >> 20} MiB, more than {MAX_MEMORY >> 20}")
    if n * r * p > MAX_WORK:
        raise ValueError(f"N * r * p is {n * r * p}, more than {MAX_WORK}")
    salt = _base64(fields[4], "salt", 8, 64)
    key = _base64(fields[5], "hash", 16, 64)
    return PasscodeHash(n, r, p, salt, key)
