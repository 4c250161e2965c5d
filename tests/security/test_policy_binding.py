"""Rule 6b of the acceptance policy: the certificate binding, placed among the other rules."""

from __future__ import annotations

from pacsref.association.policy import PolicyView, Rule, decide
from pacsref.settings import ServerSettings
from pacsref.ul import codec
from pacsref.ul.events import REJECT_CALLING_AE

from ..server.helpers import associate_rq


def _request(calling: str = "CT_ROOM_1"):  # type: ignore[no-untyped-def]
    return codec.decode_associate_rq(associate_rq(called="SECURE", calling=calling)[6:])


def test_binding_refusal_is_1_1_3_with_its_rule() -> None:
    """A binding refusal is A-ASSOCIATE-RJ (1, 1, 3) with rule certificate-binding and the why."""
    view = PolicyView(
        settings=ServerSettings(ae_title="SECURE"),
        certificate_refusal=lambda calling: f"{calling} is bound elsewhere",
    )
    refusal = decide(_request(), "127.0.0.1", view)
    assert refusal is not None
    assert refusal.reject == REJECT_CALLING_AE
    assert refusal.rule is Rule.CERTIFICATE_BINDING
    assert refusal.why == "CT_ROOM_1 is bound elsewhere"


def test_binding_comes_after_the_ae_table_rules() -> None:
    """An unknown calling AE with Allow Anonymous off is refused by rule 6 first."""
    view = PolicyView(
        settings=ServerSettings(ae_title="SECURE", allow_anonymous=False),
        certificate_refusal=lambda calling: "bound elsewhere",
    )
    refusal = decide(_request(), "127.0.0.1", view)
    assert refusal is not None and refusal.rule is Rule.CALLING_AE


def test_no_binding_no_refusal() -> None:
    """The default view (no TLS, no bindings) never refuses on certificates."""
    view = PolicyView(settings=ServerSettings(ae_title="SECURE"))
    assert decide(_request(), "127.0.0.1", view) is None
