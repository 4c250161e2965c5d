"""Steps about DICOM TLS: a secure server, modality certificates, DCMTK's echoscu over TLS.

The certificates are made in the scenario (trustme, via :class:`pacsref.testing.tls.TestPKI`)
and written as PEM files beside the server directory; the server reads them through its security
add-in's ``addin-options/security.toml``, as an administrator would set it up. DCMTK's echoscu
plays the modality: an independent TLS and DICOM implementation. Its outcome is reduced to the
same shapes as the other echo steps (``context.echo_outcome``, ``context.answer``), so "the echo
succeeds" and "the association is rejected as ..." read the same here.
"""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any

from behave import given, then, when
from scenario_support import Answer, configured_server, create_in_process, running_server

from pacsref.testing.dcmtk import parse_rejection
from pacsref.testing.tls import LeafFiles, TestPKI, write_security_options
from pacsref.testing.twistd import ServerStartError, TwistdServer

#: Feature wording -> DCMTK 3.6.7 echoscu security profile option.
PROFILES = {
    "Non-downgrading BCP 195": "+py",
    "BCP 195": "+px",
    "Extended BCP 195": "+pz",
    "retired AES": "+pa",
}

#: How long the server may take to log what happened after the peer has gone.
LOG_DEADLINE_S = 10.0


@dataclass(frozen=True)
class TLSEchoOutcome:
    """What echoscu saw, in the fields the echo Then steps read."""

    client: str
    requested: int
    succeeded: int
    rejection: tuple[int, int, int] | None
    detail: str
    elapsed: float


def _pki(context: Any) -> TestPKI:
    pki: TestPKI | None = getattr(context, "tls_pki", None)
    if pki is None:
        raise AssertionError('say "Given the server is secure, ..." first')
    return pki


def _write_options(context: Any) -> None:
    server: TwistdServer = context.pacsref_server
    write_security_options(
        server.server_dir, _pki(context), bindings=getattr(context, "tls_bindings", [])
    )


@given("the server is secure, with a certificate from the site CA")
def step_server_secure(context: Any) -> None:
    """Server Secure on, and the security add-in's options naming a certificate, its key and
    the site CA. The server directory is created now, so settings go in earlier Givens."""
    server = configured_server(context)
    context.tls_pki = TestPKI(server.server_dir.parent / "pki", rsa=True)
    context.tls_bindings = []
    context.tls_certificates = {}
    server.settings["server_secure"] = "true"
    create_in_process(server)
    _write_options(context)


@given('the certificate "{common_name}" is bound to the calling AE title "{ae_title}"')
def step_binding(context: Any, common_name: str, ae_title: str) -> None:
    """One row of the binding table: the certificate with that subject CN may use that title."""
    configured_server(context)
    context.tls_bindings.append(("subject_cn", common_name, [ae_title]))
    _write_options(context)


@given('the modality "{name}" has {kind}')
def step_modality_certificate(context: Any, name: str, kind: str) -> None:
    """The modality's client certificate (subject CN = its name), of the kind the feature says."""
    pki = _pki(context)
    makers = {
        "a certificate from the site CA": lambda: pki.issue(name, common_name=name),
        "an expired certificate": lambda: pki.issue_expired(name, name),
        "a certificate from an unknown CA": lambda: pki.issue_untrusted(name, name),
        "a certificate for servers only": lambda: pki.issue_server_only(name, name),
        "no certificate": lambda: None,
    }
    if kind not in makers:
        raise AssertionError(f"unknown certificate kind {kind!r}; known: {', '.join(makers)}")
    context.tls_certificates[name] = makers[kind]()


def _echoscu_tls(
    context: Any, calling: str, called: str, leaf: LeafFiles | None, profile: str | None
) -> None:
    if context.dcmtk is None:
        raise AssertionError("DCMTK is not installed: tag the scenario @dcmtk")
    server = running_server(context)
    host, port = server.address
    pki = _pki(context)
    tls = ["+tls", str(leaf.private_key), str(leaf.certificate)] if leaf else ["+tla"]
    argv = [context.dcmtk, "-to", "10", "-ta", "10", *tls, "+cf", str(pki.ca_file)]
    if profile is not None:
        if profile not in PROFILES:
            raise AssertionError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
        argv.append(PROFILES[profile])
    argv += ["-aet", calling, "-aec", called, host, str(port)]
    started = time.monotonic()
    done = subprocess.run(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60, check=False
    )
    elapsed = time.monotonic() - started
    rejection = parse_rejection(done.stdout)
    ok = done.returncode == 0
    detail = f"echoscu exit code {done.returncode}\n{done.stdout}"
    context.echo_outcome = TLSEchoOutcome(
        "DCMTK echoscu +tls", 1, 1 if ok else 0, rejection, detail, elapsed
    )
    context.answer = Answer("DCMTK echoscu +tls", ok, rejection, elapsed, detail)


@when('the modality "{calling}" sends a C-ECHO to "{called}" over TLS with DCMTK echoscu')
def step_echo_tls(context: Any, calling: str, called: str) -> None:
    """echoscu +tls with the modality's own certificate, DCMTK's default profile."""
    _echoscu_tls(context, calling, called, context.tls_certificates[calling], None)


@when(
    'the modality "{calling}" sends a C-ECHO to "{called}" over TLS with DCMTK echoscu'
    " using the {profile} profile"
)
def step_echo_tls_profile(context: Any, calling: str, called: str, profile: str) -> None:
    """echoscu +tls under a named DCMTK security profile."""
    _echoscu_tls(context, calling, called, context.tls_certificates[calling], profile)


@when(
    'the modality "{calling}" sends a C-ECHO to "{called}" over TLS with DCMTK echoscu'
    ' presenting the certificate of "{owner}"'
)
def step_echo_tls_other_certificate(context: Any, calling: str, called: str, owner: str) -> None:
    """echoscu +tls calling as one AE title with the certificate issued to another."""
    _echoscu_tls(context, calling, called, context.tls_certificates[owner], None)


@then("the connection is refused during the TLS handshake")
def step_refused_in_handshake(context: Any) -> None:
    """No association at all: no A-ASSOCIATE-AC, and no A-ASSOCIATE-RJ either."""
    answer: Answer = context.answer
    assert not answer.accepted, f"{answer.client} was accepted: {answer.detail}"
    assert answer.rejection is None, f"an A-ASSOCIATE-RJ came back: {answer.detail}"


@then('the server log says "{text}"')
def step_log_says(context: Any, text: str) -> None:
    """The server logged ``text`` (within a bound: it logs once the peer has gone)."""
    server: TwistdServer = context.pacsref_server
    deadline = time.monotonic() + LOG_DEADLINE_S
    while text not in server.log_tail(lines=400):
        if time.monotonic() > deadline or not server.running:
            raise AssertionError(f"the log does not say {text!r}:\n{server.log_tail()}")
        threading.Event().wait(0.05)  # a bounded poll of a real condition


@when("the server is started")
def step_server_started(context: Any) -> None:
    """Start the server; a refusal to start is kept for the Then steps, not raised."""
    configured_server(context)
    context.start_error = None
    try:
        running_server(context)
    except ServerStartError as exc:
        context.start_error = exc


@then('it refuses to start, saying "{text}" in one line')
def step_refuses_to_start(context: Any, text: str) -> None:
    """twistd exited with status 1, and one line of its output names the reason."""
    error: ServerStartError | None = context.start_error
    assert error is not None, "the server started"
    server: TwistdServer = context.pacsref_server
    assert server.returncode == 1, f"exit status {server.returncode}"
    lines = [line for line in str(error).splitlines() if text in line]
    assert lines, f"no line says {text!r}:\n{error}"
