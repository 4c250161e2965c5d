"""User Identity negotiation (PS3.7 D.3.3.7) with requestors nobody here wrote.

DCMTK's storescu sends a User Identity sub-item with ``--user``/``--password`` and, with
``--pos-response``, insists on the acceptor's User Identity response (its echoscu has no
such options); pynetdicom's
requestor decodes that response into its own primitive. The server is the real
``twistd``-launched one with a small verifier add-in in its ``addins/`` folder.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.pdu_primitives import UserIdentityNegotiation

from pacsref.testing.dcmtk import DcmtkResult, require_dcmtk, run_storescu
from pacsref.testing.twistd import TwistdServer
from tests.storage.dicomgen import ROOT, make_instance

pytestmark = pytest.mark.interop

AE_TITLE = "PACSREF"
VERIFICATION = "1.2.840.10008.1.1"

VERIFIER = """
from zope.interface import implementer
from pacsref.addin import IAddin, IUserIdentityNegotiation

@implementer(IAddin, IUserIdentityNegotiation)
class Users:
    name = "test-users"
    description = "alice/secret, for the interoperability tests"
    def presentation_contexts(self):
        return ()
    def verify_user_identity(self, info, identity):
        return (identity.username, identity.passcode) == ("alice", "secret")

addin = Users()
"""


@pytest.fixture(scope="module")
def storescu() -> str:
    """DCMTK's storescu; requested before the server, so a missing DCMTK skips without a start."""
    return require_dcmtk("storescu")


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small CT image to store."""
    where = tmp_path_factory.mktemp("user-identity") / "ct.dcm"
    return make_instance(where, study_uid=generate_uid(ROOT), series_uid=generate_uid(ROOT))


def _store(storescu: str, server: TwistdServer, image: Path, *options: str) -> DcmtkResult:
    host, port = server.address
    return run_storescu(
        host, port, AE_TITLE, [image], options=options, timeout_s=30, storescu=storescu
    )


def _server(with_verifier: bool) -> TwistdServer:
    """A server with the test verifier, or with none: the shipped "users" add-in (which
    abstains until it has an accounts file) is taken out of both."""
    running = TwistdServer(AE_TITLE, settings={"check_called_ae_title": "true"})
    running.create()
    shutil.rmtree(running.server_dir / "addins" / "users")
    if with_verifier:
        (running.server_dir / "addins" / "test_users.py").write_text(VERIFIER)
    return running


@pytest.fixture(scope="module")
def verifying(storescu: str) -> Iterator[TwistdServer]:
    """A server whose add-in accepts alice with passcode secret, and nobody else."""
    with _server(with_verifier=True) as running:
        yield running


@pytest.fixture(scope="module")
def plain(storescu: str) -> Iterator[TwistdServer]:
    """A server with no user identity add-in (the embedded default's add-ins)."""
    with _server(with_verifier=False) as running:
        yield running


def _identity(user: str, password: str, *, positive: bool) -> tuple[str, ...]:
    return ("--user", user, "--password", password, *(("--pos-response",) if positive else ()))


def test_storescu_user_and_password_accepted_with_positive_response(
    storescu: str, verifying: TwistdServer, image: Path
) -> None:
    """``--user alice --password secret --pos-response``: DCMTK requires the User Identity
    response in the A-ASSOCIATE-AC, and gets it; the image is stored."""
    outcome = _store(storescu, verifying, image, *_identity("alice", "secret", positive=True))
    assert outcome.returncode == 0, outcome.output
    log = verifying.log_path.read_text()
    assert "user username and passcode 'alice' verified" in log
    assert "secret" not in log


def test_storescu_wrong_password_is_rejected_1_2_1(
    storescu: str, verifying: TwistdServer, image: Path
) -> None:
    """A passcode the add-in refuses: A-ASSOCIATE-RJ rejected-permanent, ACSE service
    provider, no reason given (PS3.7 D.3.3.7), as DCMTK reports it."""
    outcome = _store(storescu, verifying, image, *_identity("alice", "guess", positive=False))
    assert outcome.returncode != 0
    assert "Association Rejected" in outcome.output, outcome.output
    assert outcome.rejection == (1, 2, 1), outcome.output
    assert "guess" not in verifying.log_path.read_text()


def test_storescu_without_identity_is_not_the_verifiers_business(
    storescu: str, verifying: TwistdServer, image: Path
) -> None:
    """No User Identity sub-item: the verifier is not asked and the store succeeds (a site
    that wants every association to carry one refuses the rest in an association hook)."""
    outcome = _store(storescu, verifying, image)
    assert outcome.returncode == 0, outcome.output


def test_no_verifier_accepts_without_a_response(
    storescu: str, plain: TwistdServer, image: Path
) -> None:
    """Without a verifier the identity is carried unverified and no response is sent, as
    PS3.7 D.3.3.7 allows: DCMTK then stores when it did not insist on a response, and
    gives up by itself when it did."""
    quiet = _store(storescu, plain, image, *_identity("alice", "anything", positive=False))
    assert quiet.returncode == 0, quiet.output
    insisting = _store(storescu, plain, image, *_identity("alice", "anything", positive=True))
    assert insisting.returncode != 0, insisting.output
    assert insisting.rejection is None, insisting.output
    assert "Positive response requested but none received" in insisting.output
    assert "not verified (no add-in verifies user identities)" in plain.log_path.read_text()


def test_pynetdicom_reads_the_positive_response(verifying: TwistdServer) -> None:
    """pynetdicom's requestor sends type 2 with a positive response requested and decodes
    our User Identity response (0x59): empty, as PS3.7 D.3.3.7.2 requires for type 2."""
    host, port = verifying.address
    ae = AE(ae_title="PYNETDICOM")
    ae.add_requested_context(VERIFICATION)
    ae.acse_timeout = ae.network_timeout = 30
    identity = UserIdentityNegotiation()
    identity.user_identity_type = 2
    identity.primary_field = b"alice"
    identity.secondary_field = b"secret"
    identity.positive_response_requested = True
    assoc = ae.associate(host, port, ae_title=AE_TITLE, ext_neg=[identity])
    try:
        assert assoc.is_established
        [response] = [
            item
            for item in assoc.acceptor.user_information
            if isinstance(item, UserIdentityNegotiation)
        ]
        assert response.server_response == b""
        status = assoc.send_c_echo()
        assert status.Status == 0x0000
    finally:
        assoc.release()
