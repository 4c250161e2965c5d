"""Passcode hash strings: ``scrypt$N$r$p$<salt>$<hash>``, checked with their own parameters."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from addins.users.passcodes import (
    DEFAULT_N,
    DEFAULT_P,
    DEFAULT_R,
    PasscodeHash,
    hash_passcode,
    parse_hash,
)

B64 = r"[A-Za-z0-9+/]+={0,2}"


def test_a_default_hash_has_the_documented_shape() -> None:
    """Defaults N=8192, r=8, p=1 (25-32 ms measured, passcodes.py), 16-byte salt, 32-byte hash."""
    text = hash_passcode(b"secret")
    match = re.fullmatch(rf"scrypt\$8192\$8\$1\$({B64})\$({B64})", text)
    assert match is not None, text
    assert len(base64.b64decode(match[1])) == 16 and len(base64.b64decode(match[2])) == 32
    assert (DEFAULT_N, DEFAULT_R, DEFAULT_P) == (8192, 8, 1)
    assert parse_hash(text).verify(b"secret")


def test_each_hash_has_its_own_salt() -> None:
    """The same passcode hashed twice gives two strings, both verifying it."""
    first, second = hash_passcode(b"same"), hash_passcode(b"same")
    assert first != second
    assert parse_hash(first).verify(b"same") and parse_hash(second).verify(b"same")


@pytest.mark.parametrize("wrong", [b"Secret", b"secret\n", b"secre", b"", "sécret".encode()])
def test_only_the_exact_passcode_verifies(wrong: bytes) -> None:
    """Any other byte string, however close, is refused."""
    stored = parse_hash(hash_passcode(b"secret", n=16, r=1, p=1))
    assert stored.verify(b"secret")
    assert not stored.verify(wrong)


def test_the_parameters_travel_with_the_hash() -> None:
    """A hash made with other parameters is checked with those, so defaults can be raised."""
    text = hash_passcode(b"pw", n=32, r=2, p=3)
    stored = parse_hash(text)
    assert (stored.n, stored.r, stored.p) == (32, 2, 3)
    assert text.startswith("scrypt$32$2$3$") and stored.verify(b"pw")
    assert str(stored) == text


def test_the_same_salt_and_parameters_give_the_same_key() -> None:
    """Deterministic given the salt (so a stored hash can be checked at all)."""
    salt = bytes(range(16))
    assert hash_passcode(b"x", n=16, r=1, p=1, salt=salt) == hash_passcode(
        b"x", n=16, r=1, p=1, salt=salt
    )


SALT = base64.b64encode(bytes(16)).decode()
KEY = base64.b64encode(bytes(32)).decode()


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("hunter2", "not of the form"),
        (f"bcrypt$16$1$1${SALT}${KEY}", "not of the form"),
        (f"scrypt$16$1${SALT}${KEY}", "not of the form"),
        (f"scrypt$16$1$1${SALT}${KEY}$", "not of the form"),
        (f"scrypt$24$1$1${SALT}${KEY}", "not a power of two"),
        (f"scrypt$1$1$1${SALT}${KEY}", "N 1 is not from 2"),
        (f"scrypt$+16$1$1${SALT}${KEY}", "N is not a decimal number"),
        (f"scrypt$0x10$1$1${SALT}${KEY}", "N is not a decimal number"),
        (f"scrypt$\uff11\uff16$1$1${SALT}${KEY}", "N is not a decimal number"),  # full-width
        (f"scrypt$16$0$1${SALT}${KEY}", "r is not a decimal number"),
        (f"scrypt$16$1$17${SALT}${KEY}", "p 17 is not from 1 to 16"),
        (f"scrypt$4194304$1$1${SALT}${KEY}", "MiB, more than 256"),
        (f"scrypt$65536$8$16${SALT}${KEY}", "N * r * p"),
        (f"scrypt$16$1$1$not*base64${KEY}", "salt is not base64"),
        (f"scrypt$16$1$1$AAAA${KEY}", "salt has 3 bytes"),
        (f"scrypt$16$1$1${SALT}$AAAA", "hash has 3 bytes"),
        (f"scrypt$16$1$1${SALT}${KEY[:-1]}", "hash is not base64"),
    ],
)
def test_a_malformed_hash_string_is_refused_without_quoting_it(text: str, why: str) -> None:
    """Each malformed string is refused saying what is wrong; the string itself (perhaps a
    plain-text passcode) is never in the message."""
    with pytest.raises(ValueError) as caught:
        parse_hash(text)
    assert why in str(caught.value)
    assert text not in str(caught.value) and "hunter2" not in str(caught.value)


def test_a_hash_repr_shows_no_salt_or_key() -> None:
    """Log lines and tracebacks that show a hash do not carry its salt or key."""
    stored = PasscodeHash(16, 1, 1, b"S" * 16, b"K" * 32)
    assert "SSSS" not in repr(stored) and "KKKK" not in repr(stored)


def test_passcodes_that_scrypt_makes_equivalent() -> None:
    """Inherent in scrypt's inner PBKDF2-HMAC-SHA256 and documented (passcodes.py): trailing
    NUL bytes are padding to HMAC, and an HMAC key over 64 bytes is replaced by its SHA-256.
    Finding either equivalent needs the passcode itself, so a guesser gains nothing."""
    stored = parse_hash(hash_passcode(b"secret", n=16, r=1, p=1))
    assert stored.verify(b"secret\0") and stored.verify(b"secret\0\0")
    long = b"x" * 65
    stored = parse_hash(hash_passcode(long, n=16, r=1, p=1))
    assert stored.verify(hashlib.sha256(long).digest())
    assert not stored.verify(long[:-1])
