"""DICOM TLS with peers nobody here wrote: DCMTK's echoscu, storescu and storescp.

A secure pacsref server runs under ``twistd`` (certificates made by trustme,
written to files, named in ``addin-options/security.toml``); DCMTK 3.6.7's
tools connect with ``+tls KEY CERT`` and ``+cf CA`` (DCMTK's default
``--require-peer-cert`` verifies our certificate), under each of its BCP 195
profiles. The other way round, ``pacsref echo --tls`` (the default
IDicomRequest) echoes a DCMTK ``storescp +tls``. Refusals are checked on both
sides: DCMTK's exit status or A-ASSOCIATE-RJ, and the reason in our log.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pacsref.security.options import verify_error_text
from pacsref.testing.dcmtk import parse_rejection, require_dcmtk
from pacsref.testing.net import LOOPBACK, free_loopback_port, wait_for_port
from pacsref.testing.tls import LeafFiles, TestPKI, write_security_options
from pacsref.testing.twistd import TwistdServer
from tests.storage.dicomgen import make_study

pytestmark = pytest.mark.interop

AE = "SECURE"
BOUND = "CT_ROOM_1"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    """RSA, like most DICOM device certificates (DCMTK's TLS 1.2 profiles need ECDHE-RSA)."""
    return TestPKI(tmp_path_factory.mktemp("pki"), server_identities=("127.0.0.1",), rsa=True)


@pytest.fixture(scope="module")
def server(pki: TestPKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwistdServer]:
    """A secure pacsref server; CN=CT_ROOM_1 is bound to the calling AE title CT_ROOM_1."""
    require_dcmtk("echoscu")
    instance = TwistdServer(
        AE,
        root=tmp_path_factory.mktemp("secure"),
        settings={"server_secure": "true", "artim_timeout": "5"},
    )
    instance.create()
    write_security_options(
        instance.server_dir, pki, bindings=[("subject_cn", BOUND, [BOUND, "CT_STORE"])]
    )
    with instance:
        yield instance


@pytest.fixture(scope="module")
def client(pki: TestPKI) -> LeafFiles:
    return pki.issue("ct", common_name=BOUND)


def _run(argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        timeout=timeout,
        check=False,
    )


def _echoscu(
    server: TwistdServer, leaf: LeafFiles | None, ca: Path, *extra: str, calling: str = BOUND
) -> subprocess.CompletedProcess[str]:
    host, port = server.address
    tls = ["+tls", str(leaf.private_key), str(leaf.certificate)] if leaf else ["+tla"]
    return _run(
        [
            *(require_dcmtk("echoscu"), "-to", "10", "-ta", "10", *tls, "+cf", str(ca), *extra),
            *("-aet", calling, "-aec", AE, host, str(port)),
        ]
    )


def _log_says(server: TwistdServer, text: str, deadline_s: float = 10.0) -> bool:
    """Wait (bounded) until the server's log contains ``text``: it logs after the peer left."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if text in server.log_tail(lines=400):
            return True
        if not server.running:
            return False
        threading.Event().wait(0.05)  # a bounded poll of a real condition, not a guess
    return False


@pytest.mark.parametrize(
    ("profile", "version"),
    [
        ([], "TLSv1.3"),  # DCMTK's default: Non-downgrading BCP 195 (+py)
        (["+px"], "TLSv1.3"),  # BCP 195 profile
        (["+pz"], "TLSv1.2"),  # Extended BCP 195: TLS 1.2 only, ECDHE + AES-GCM
    ],
)
def test_echoscu_tls_profiles(
    server: TwistdServer, pki: TestPKI, client: LeafFiles, profile: list[str], version: str
) -> None:
    """echoscu +tls succeeds under DCMTK's BCP 195 profiles and verifies our certificate."""
    result = _echoscu(server, client, pki.ca_file, *profile, "--require-peer-cert")
    assert result.returncode == 0, result.stdout
    assert _log_says(server, f"TLS established ({version}")


def test_echoscu_aes_profile_refused(server: TwistdServer, pki: TestPKI, client: LeafFiles) -> None:
    """DCMTK's retired AES profile (TLS_RSA_WITH_AES_128_CBC_SHA, no TLS 1.3) is refused."""
    result = _echoscu(server, client, pki.ca_file, "+pa")
    assert result.returncode != 0
    assert "handshake failure" in result.stdout
    assert _log_says(server, "TLS handshake failed: no shared cipher")


def test_echoscu_bound_certificate_other_title_rejected(
    server: TwistdServer, pki: TestPKI, client: LeafFiles
) -> None:
    """The CT's certificate calling as another AE title: A-ASSOCIATE-RJ (1, 1, 3)."""
    result = _echoscu(server, client, pki.ca_file, calling="MR_1")
    assert result.returncode != 0
    assert parse_rejection(result.stdout) == (1, 1, 3), result.stdout
    assert _log_says(server, "is bound to calling AE title(s) CT_ROOM_1, CT_STORE, not 'MR_1'")


def test_echoscu_other_certificate_cannot_use_bound_title(
    server: TwistdServer, pki: TestPKI
) -> None:
    """A valid certificate of someone else calling as CT_ROOM_1: A-ASSOCIATE-RJ (1, 1, 3)."""
    intruder = pki.issue("intruder", common_name="WORKSTATION_7")
    result = _echoscu(server, intruder, pki.ca_file)
    assert parse_rejection(result.stdout) == (1, 1, 3), result.stdout


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        ("expired", "certificate has expired"),
        ("untrusted", "unable to get local issuer certificate"),
        ("purpose", verify_error_text(26)),  # X509_V_ERR_INVALID_PURPOSE: its text varies
    ],
)
def test_echoscu_bad_client_certificates_refused(
    server: TwistdServer, pki: TestPKI, make: str, reason: str
) -> None:
    """Expired, untrusted and wrong-purpose client certificates: refused, reason logged."""
    leaf = {
        "expired": lambda: pki.issue_expired("dcmtk-expired", "OLD_CT"),
        "untrusted": lambda: pki.issue_untrusted("dcmtk-untrusted", "ROGUE"),
        "purpose": lambda: pki.issue_server_only("dcmtk-purpose", "SERVER_ONLY"),
    }[make]()
    result = _echoscu(server, leaf, pki.ca_file)
    assert result.returncode != 0
    assert _log_says(server, f"peer certificate refused: {reason}")


def test_echoscu_without_client_certificate_refused(server: TwistdServer, pki: TestPKI) -> None:
    """Anonymous TLS (+tla, no client certificate) is refused: client certificates required."""
    result = _echoscu(server, None, pki.ca_file)
    assert result.returncode != 0
    assert _log_says(server, "peer did not return a certificate")


def test_plain_echoscu_on_the_tls_port_refused(server: TwistdServer) -> None:
    """A plain (non-TLS) echoscu gets nowhere, and the server stays up for the others."""
    host, port = server.address
    result = _run([require_dcmtk("echoscu"), "-to", "5", "-ta", "5", "-aec", AE, host, str(port)])
    assert result.returncode != 0
    assert _log_says(server, "TLS handshake failed: wrong version number")
    assert server.running


def test_storescu_tls_stores_a_study(
    server: TwistdServer, pki: TestPKI, client: LeafFiles, tmp_path: Path
) -> None:
    """storescu +tls sends a 2 x 3 image study; every object arrives in the server's store."""
    study = make_study(tmp_path / "study", series=2, per_series=3, rows=32, cols=32)
    host, port = server.address
    result = _run(
        [
            *(require_dcmtk("storescu"), "-to", "10", "-ta", "10"),
            *("+tls", str(client.private_key), str(client.certificate), "+cf", str(pki.ca_file)),
            *("-aet", "CT_STORE", "-aec", AE, host, str(port), *map(str, study.files)),
        ]
    )
    assert result.returncode == 0, result.stdout
    stored = list((server.server_dir / "data").glob("*/*.dcm"))
    assert len(stored) >= len(study.files)


@pytest.fixture(scope="module")
def storescp(pki: TestPKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """DCMTK storescp +tls (AE STORESCP), requiring and verifying client certificates."""
    binary = require_dcmtk("storescp")
    port = free_loopback_port()
    out = tmp_path_factory.mktemp("storescp")
    process = subprocess.Popen(
        [
            *(binary, "--aetitle", "STORESCP", "--acse-timeout", "5", "-od", str(out)),
            *("+tls", str(pki.server.private_key), str(pki.server.certificate)),
            *("+cf", str(pki.ca_file), "--require-peer-cert", str(port)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_for_port(LOOPBACK, port, 10), "storescp +tls did not start listening"
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def _pacsref_echo(
    port: int, host: str, leaf: LeafFiles, ca: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *(sys.executable, "-m", "pacsref.manager.cli", "echo", "--host", host),
            *("--port", str(port), "--called-ae", "STORESCP", "--timeout", "10", "--tls"),
            *("--cert", str(leaf.certificate), "--key", str(leaf.private_key), "--ca", str(ca)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_requestor_echoes_dcmtk_storescp_over_tls(
    storescp: int, pki: TestPKI, client: LeafFiles
) -> None:
    """IDicomRequest over TLS: storescp verifies our certificate, we verify its (127.0.0.1)."""
    result = _pacsref_echo(storescp, LOOPBACK, client, pki.ca_file)
    assert result.returncode == 0, result.stderr
    assert "status 0x0000" in result.stdout


def test_requestor_refuses_storescp_under_another_name(
    storescp: int, pki: TestPKI, client: LeafFiles
) -> None:
    """Its certificate names 127.0.0.1 only: reached as 'localhost' it is refused."""
    result = _pacsref_echo(storescp, "localhost", client, pki.ca_file)
    assert result.returncode == 1
    assert (
        "TLS handshake failed: peer certificate refused: not issued for localhost "
        "(no subjectAltName dNSName matches it)"
    ) in result.stderr
