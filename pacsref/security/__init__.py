"""DICOM TLS for pacsref: BCP 195 connection options, peer identity, AE-title binding.

The TLS parameters come from an :class:`~pacsref.addin.ISecurity` provider
(the shipped Security add-in, or your own); this package turns them into
Twisted connection creators, built explicitly with ``CertificateOptions``
(STYLE.md principle 13), and gives the server what it needs to log and police
TLS peers. The submodules are implementation detail; import from here.
See docs/security.md for the decisions and their sources.
"""

from pacsref.security.credentials import (
    Credentials,
    TLSConfigurationError,
    load_certificates,
    load_credentials,
)
from pacsref.security.identity import (
    CertificateBinding,
    CertificateIdentity,
    IdentityKind,
    binding_refusal,
    normalize_fingerprint,
)
from pacsref.security.options import (
    BCP195_TLS12_CIPHERS,
    MINIMUM_TLS_VERSION,
    TLS13_CIPHERSUITES,
    ServerTLSOptions,
    VerificationFailure,
    client_tls_options,
    server_tls_options,
    verification_failure,
)
from pacsref.security.server import (
    SecureTransport,
    configure_security,
    secure_startup_problem,
    security_providers,
)
from pacsref.security.static import StaticSecurity
from pacsref.security.transport import (
    handshake_failure,
    is_tls,
    peer_certificate,
    peer_identity,
    tls_session,
    underlying_socket,
)

__all__ = [
    "BCP195_TLS12_CIPHERS",
    "MINIMUM_TLS_VERSION",
    "TLS13_CIPHERSUITES",
    "CertificateBinding",
    "CertificateIdentity",
    "Credentials",
    "IdentityKind",
    "SecureTransport",
    "ServerTLSOptions",
    "StaticSecurity",
    "TLSConfigurationError",
    "VerificationFailure",
    "binding_refusal",
    "client_tls_options",
    "configure_security",
    "handshake_failure",
    "is_tls",
    "load_certificates",
    "load_credentials",
    "normalize_fingerprint",
    "peer_certificate",
    "peer_identity",
    "secure_startup_problem",
    "security_providers",
    "server_tls_options",
    "tls_session",
    "underlying_socket",
    "verification_failure",
]
