"""The shipped Security add-in: inactive without options, ISecurity with them, loud when wrong."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from twisted.logger import LogEvent, formatEvent, globalLogPublisher
from zope.interface.verify import verifyObject

from addins.security.options import load_options
from pacsref.addin import IAddin, ISecurity, load_addins
from pacsref.security import IdentityKind
from pacsref.server.create import create_server
from pacsref.settings import SettingsError
from pacsref.testing.tls import TestPKI

GOOD = """
certificate = "tls/server.pem"
private_key = "tls/server.key"
trusted_ca = "tls/ca.pem"
require_client_certificate = true

[[binding]]
subject_cn = "CT_ROOM_1"
ae_titles = ["CT_ROOM_1", "CT_QR"]

[[binding]]
fingerprint_sha256 = "{fingerprint}"
ae_titles = ["MR_1"]
description = "the MR's own certificate, pinned"
"""


@pytest.fixture
def server_dir(tmp_path: Path) -> Path:
    """A server directory with the shipped add-ins and a PKI in ``tls/``."""
    directory = tmp_path / "SECURE"
    create_server(directory, {"ae_title": "SECURE"})
    pki = TestPKI(directory / "tls")
    assert pki.server.certificate.name == "server.pem"
    return directory


def _write_options(server_dir: Path, text: str) -> Path:
    path = server_dir / "addin-options" / "security.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def _security_addin(server_dir: Path) -> object:
    result = load_addins(server_dir / "addins", entry_point_group=None, strict=False)
    [addin] = [a for a in result.addins if a.name == "security"]  # type: ignore[attr-defined]
    return addin


def _failure(server_dir: Path) -> str:
    result = load_addins(server_dir / "addins", entry_point_group=None, strict=False)
    [failure] = [f for f in result.failures if f.name == "security"]
    return failure.error


def test_shipped_into_every_server_and_inactive_without_options(server_dir: Path) -> None:
    """A plain server loads the add-in harmlessly: IAddin only, and one log line says why."""
    assert (server_dir / "addins" / "security" / "__init__.py").is_file()
    lines: list[str] = []

    def observe(event: LogEvent) -> None:
        if event.get("log_namespace") == "pacsref.addin.security":
            lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    try:
        addin = _security_addin(server_dir)
    finally:
        globalLogPublisher.removeObserver(observe)
    assert verifyObject(IAddin, addin)
    assert not ISecurity.providedBy(addin)
    assert addin.presentation_contexts() == ()  # type: ignore[attr-defined]
    assert lines == [
        "security add-in inactive: no "
        f"{server_dir / 'addin-options' / 'security.toml'}; this server cannot be secure"
    ]


def test_active_with_options(server_dir: Path) -> None:
    """With an options file it provides ISecurity; paths are relative to the server directory."""
    leaf = x509.load_pem_x509_certificate((server_dir / "tls" / "server.pem").read_bytes())
    fingerprint = leaf.fingerprint(hashes.SHA256()).hex(":")
    _write_options(server_dir, GOOD.format(fingerprint=fingerprint.upper()))
    addin = _security_addin(server_dir)
    assert verifyObject(ISecurity, addin) and verifyObject(IAddin, addin)
    assert addin.certificate == server_dir / "tls" / "server.pem"  # type: ignore[attr-defined]
    assert addin.trust_roots == (server_dir / "tls" / "ca.pem",)  # type: ignore[attr-defined]
    assert addin.require_peer_certificate is True  # type: ignore[attr-defined]
    assert addin.passphrase is None  # type: ignore[attr-defined]
    kinds = [(b.kind, sorted(b.ae_titles)) for b in addin.bindings]  # type: ignore[attr-defined]
    assert kinds == [
        (IdentityKind.SUBJECT_CN, ["CT_QR", "CT_ROOM_1"]),
        (IdentityKind.FINGERPRINT_SHA256, ["MR_1"]),
    ]


def test_a_broken_options_file_fails_the_addin_naming_every_problem(server_dir: Path) -> None:
    """Unknown key, wrong types and a bad binding are all reported, with file and field."""
    _write_options(
        server_dir,
        """
certificate = 42
private_key = "tls/server.key"
trusted_ca = "tls/ca.pem"
require_client_certificate = "yes"
colour = "blue"

[[binding]]
subject_cn = "CT"
san_dns = "ct.example"
ae_titles = ["CT"]

[[binding]]
fingerprint_sha256 = "not-hex"
ae_titles = ["MR"]

[[binding]]
subject_cn = "X"
ae_titles = ["THIS_TITLE_IS_TOO_LONG"]
""",
    )
    error = _failure(server_dir)
    assert "security.toml: colour = " in error and "is not a known option" in error
    assert "certificate = 42 is not a non-empty string" in error
    assert 'require_client_certificate = "yes" is not a boolean' in error
    assert "binding[1] names san_dns, subject_cn as identity" in error
    assert "binding[2].fingerprint_sha256" in error and "64 hex digits" in error
    assert "binding[3].ae_titles" in error and "THIS_TITLE_IS_TOO_LONG" in error


def test_a_broken_options_file_is_no_traceback_in_the_log(
    server_dir: Path, log_events: list[LogEvent]
) -> None:
    """A settings problem names its file and field already: loading the add-ins logs no
    traceback for it (the server reports the failure in one line, and a secure server then
    refuses to start in one more), while an add-in's own bug still gets its traceback."""
    _write_options(server_dir, "certificate = 42\n")
    (server_dir / "addins" / "buggy.py").write_text("1 / 0\n")
    result = load_addins(server_dir / "addins", entry_point_group=None, strict=False)
    assert {f.name for f in result.failures} == {"security", "buggy"}
    tracebacks = [e for e in log_events if e.get("log_failure") is not None]
    assert [e["name"] for e in tracebacks] == ["buggy"]


def test_required_keys_and_trust(server_dir: Path) -> None:
    """certificate and private_key are required; client certificates need trusted_ca."""
    _write_options(server_dir, "require_client_certificate = true\n")
    with pytest.raises(SettingsError) as caught:
        load_options(server_dir)
    text = str(caught.value)
    assert "certificate is required" in text and "private_key is required" in text
    assert "require_client_certificate = true needs trusted_ca" in text


def test_file_problems_are_reported_against_the_option(server_dir: Path) -> None:
    """A missing or mismatched file is reported with the option that named it."""
    _write_options(
        server_dir,
        'certificate = "tls/server.pem"\nprivate_key = "tls/missing.key"\n'
        'trusted_ca = ["tls/ca.pem"]\n',
    )
    with pytest.raises(SettingsError, match=r"private_key = \".*missing.key\" does not exist"):
        load_options(server_dir)


def test_passphrase_file(server_dir: Path) -> None:
    """An encrypted key opens with the passphrase file's first line; a wrong one is named."""
    plain = server_dir / "tls" / "server.key"
    key = serialization.load_pem_private_key(plain.read_bytes(), None)
    (server_dir / "tls" / "server.enc.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"open sesame"),
        )
    )
    (server_dir / "tls" / "pass.txt").write_text("open sesame\n")
    base = 'certificate = "tls/server.pem"\nprivate_key = "tls/server.enc.key"\n'
    base += 'trusted_ca = "tls/ca.pem"\n'
    _write_options(server_dir, base + 'passphrase_file = "tls/pass.txt"\n')
    options = load_options(server_dir)
    assert options is not None and options.passphrase == b"open sesame"
    _write_options(server_dir, base + 'passphrase = "wrong"\n')
    with pytest.raises(SettingsError, match="wrong passphrase"):
        load_options(server_dir)
    _write_options(server_dir, base + 'passphrase = "x"\npassphrase_file = "tls/pass.txt"\n')
    with pytest.raises(SettingsError, match="and passphrase_file are both given"):
        load_options(server_dir)


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        ("passphrase = 98765432\n", 'passphrase = "<int>" is not a string'),
        ('pasphrase = "S3cr3t-typo"\n', 'pasphrase = "..." is not a known option'),
    ],
)
def test_a_passphrase_is_never_shown_in_a_problem(server_dir: Path, line: str, shown: str) -> None:
    """A passphrase written as a number, or under a misspelt key, is still a secret: the
    refusal (the start-up line, the add-in failure in the log) names the key, not the value."""
    base = 'certificate = "tls/server.pem"\nprivate_key = "tls/server.key"\n'
    _write_options(server_dir, base + line)
    with pytest.raises(SettingsError) as info:
        load_options(server_dir)
    assert shown in str(info.value)
    assert "98765432" not in str(info.value) and "S3cr3t" not in str(info.value)


def test_duplicate_identity_refused(server_dir: Path) -> None:
    """The same certificate identity in two rows is ambiguous and refused."""
    rows = '[[binding]]\nsubject_cn = "CT"\nae_titles = ["A"]\n' * 2
    _write_options(
        server_dir,
        'certificate = "tls/server.pem"\nprivate_key = "tls/server.key"\n'
        f'trusted_ca = "tls/ca.pem"\n{rows}',
    )
    with pytest.raises(
        SettingsError, match=r"binding\[2\] .* repeats the identity of binding\[1\]"
    ):
        load_options(server_dir)


def test_absolute_paths_are_kept(server_dir: Path, tmp_path: Path) -> None:
    """An absolute path is used as written, not joined to the server directory."""
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(server_dir / "tls", elsewhere)
    _write_options(
        server_dir,
        f'certificate = "{elsewhere / "server.pem"}"\nprivate_key = "{elsewhere / "server.key"}"\n'
        f'trusted_ca = "{elsewhere / "ca.pem"}"\n',
    )
    options = load_options(server_dir)
    assert options is not None and options.certificate == elsewhere / "server.pem"


def _warnings_of_loading(server_dir: Path) -> list[str]:
    """The add-in's warnings while it loads from ``server_dir``."""
    lines: list[str] = []

    def observe(event: LogEvent) -> None:
        if event.get("log_namespace") == "pacsref.addin.security" and (
            event["log_level"].name == "warn"
        ):
            lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    try:
        _security_addin(server_dir)
    finally:
        globalLogPublisher.removeObserver(observe)
    return lines


def test_a_passphrase_file_readable_by_others_is_warned_about(server_dir: Path) -> None:
    """The passphrase unlocks the key, so its file draws the same warning as a readable key;
    with the key, the options file and the passphrase file all private, there is none."""
    plain = server_dir / "tls" / "server.key"
    key = serialization.load_pem_private_key(plain.read_bytes(), None)
    encrypted = server_dir / "tls" / "server.enc.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"open sesame"),
        )
    )
    passphrase_file = server_dir / "tls" / "pass.txt"
    passphrase_file.write_text("open sesame\n")
    options_file = _write_options(
        server_dir,
        'certificate = "tls/server.pem"\nprivate_key = "tls/server.enc.key"\n'
        'trusted_ca = "tls/ca.pem"\npassphrase_file = "tls/pass.txt"\n',
    )
    encrypted.chmod(0o600)
    options_file.chmod(0o600)
    passphrase_file.chmod(0o644)
    assert _warnings_of_loading(server_dir) == [
        f"passphrase file {passphrase_file} is readable by other users (mode 644); chmod 600 it"
    ]
    passphrase_file.chmod(0o600)
    assert _warnings_of_loading(server_dir) == []
