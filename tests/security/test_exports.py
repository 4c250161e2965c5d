"""The public surface of :mod:`pacsref.security`, pinned (Klein's test_exports habit)."""

from __future__ import annotations

import pacsref.security as security
from pacsref.security import credentials, identity, options, server, static, transport

EXPECTED = {
    credentials: ["Credentials", "TLSConfigurationError", "load_certificates", "load_credentials"],
    identity: [
        "CertificateBinding",
        "CertificateIdentity",
        "IdentityKind",
        "binding_refusal",
        "normalize_fingerprint",
    ],
    options: [
        "BCP195_TLS12_CIPHERS",
        "MINIMUM_TLS_VERSION",
        "TLS13_CIPHERSUITES",
        "ServerTLSOptions",
        "VerificationFailure",
        "client_tls_options",
        "server_tls_options",
        "verification_failure",
    ],
    server: [
        "SecureTransport",
        "configure_security",
        "secure_startup_problem",
        "security_providers",
    ],
    static: ["StaticSecurity"],
    transport: [
        "handshake_failure",
        "is_tls",
        "peer_certificate",
        "peer_identity",
        "tls_session",
        "underlying_socket",
    ],
}


def test_exports_are_exactly_the_public_names() -> None:
    """``__all__`` lists every public name once, each the very object of its submodule."""
    names = [name for group in EXPECTED.values() for name in group]
    assert sorted(security.__all__) == sorted(names)
    for module, group in EXPECTED.items():
        for name in group:
            assert getattr(security, name) is getattr(module, name), name
