"""Message notification after a store, and the add-in timeout on a nonblocking Deferred."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from tests.storage.dicomgen import ROOT, make_instance
from tests.storage.helpers import associate, dataset_bytes, send_store, storage_harness

#: Two subscribers in one add-in module; ``{instances}`` creates them, in the order given: the
#: loader takes a module's add-ins in the order its names were bound (pacsref/addin/loader.py).
LISTENER = """
from zope.interface import implementer
from pacsref.addin import IAddin, IMessageNotification

SEEN = []
RAISED = []

@implementer(IAddin, IMessageNotification)
class Listener:
    name = "listener"
    description = "records what it is told"
    def presentation_contexts(self):
        return ()
    def notify(self, message):
        SEEN.append(message)

@implementer(IAddin, IMessageNotification)
class Broken:
    name = "broken-listener"
    description = "always raises"
    def presentation_contexts(self):
        return ()
    def notify(self, message):
        RAISED.append(message)
        raise RuntimeError("observer bug")

{instances}
"""

LISTENER_FIRST = "listener = Listener()\nbroken = Broken()"
BROKEN_FIRST = "broken = Broken()\nlistener = Listener()"

HANGING = """
from twisted.internet.defer import Deferred
from zope.interface import implementer
from pacsref.addin import IAddin, IEchoHandler, SupportedContext, nonblocking

@implementer(IAddin, IEchoHandler)
class Hanging:
    name = "hanging"
    description = "returns a Deferred that never fires"
    def presentation_contexts(self):
        return (SupportedContext("1.2.826.0.1.3680043.9.7.9", ("1.2.840.10008.1.2",)),)
    @nonblocking
    def handle_echo(self, request):
        return Deferred()

hanging = Hanging()
"""


def _store_one(
    tmp_path: Path, settings: dict[str, object] | None = None, instances: str = LISTENER_FIRST
) -> tuple[list, str]:  # type: ignore[type-arg]
    """Store one image with the two subscribers loaded; what the listener saw, and the UID.

    Also checks that the subscribers were notified in ``instances``' order and that the
    raising one was called, so a test relying on the order cannot pass for want of it.
    """
    harness = storage_harness(
        tmp_path / "PACSREF",
        settings=settings,
        extra_addins={"listener.py": LISTENER.format(instances=instances)},
    )
    path = make_instance(tmp_path / "a.dcm", study_uid=generate_uid(ROOT),
                         series_uid=generate_uid(ROOT))  # fmt: skip
    uid = dcmread(path).SOPInstanceUID
    [response] = send_store(associate(harness), uid, dataset_bytes(path))
    assert response[0x0900] == 0
    names = [a.name for a in harness.server.addins if a.name in ("listener", "broken-listener")]
    expected = ["listener", "broken-listener"]
    assert names == (expected if instances == LISTENER_FIRST else expected[::-1])
    listener = next(a for a in harness.server.addins if a.name == "listener")
    module = __import__(type(listener).__module__, fromlist=["SEEN", "RAISED"])
    seen = module.SEEN
    assert seen == [] and module.RAISED == []  # nothing before the response has gone out
    harness.clock.advance(0)
    harness.threadpool.run_all()
    assert len(module.RAISED) == 1  # the raising subscriber was called, and raised
    return seen, uid


@pytest.mark.parametrize(
    "instances", [BROKEN_FIRST, LISTENER_FIRST], ids=["broken-first", "listener-first"]
)
def test_subscriber_gets_stored_dataset_without_pixels(tmp_path: Path, instances: str) -> None:
    """After a store, subscribers get the stored data set, Pixel Data left out by default;
    a subscriber that raises does not stop the others, whether it comes before or after them."""
    seen, uid = _store_one(tmp_path, instances=instances)
    [message] = seen
    assert message.dataset.SOPInstanceUID == uid
    assert "PixelData" not in message.dataset
    assert message.dataset_path.name == f"{uid}.dcm"
    assert message.status == 0x0000


def test_copy_dataset_image_includes_pixels(tmp_path: Path) -> None:
    """With the server setting copy_dataset_image on, Pixel Data is included."""
    seen, _ = _store_one(tmp_path, settings={"copy_dataset_image": True})
    assert "PixelData" in seen[0].dataset


def test_nonblocking_deferred_gets_the_addin_timeout(tmp_path: Path) -> None:
    """A nonblocking handler whose Deferred never fires is answered 0x0110 at the timeout."""
    from pacsref.ul.events import PresentationContextProposal
    from tests.server.helpers import associate_rq, echo_rq, responses

    harness = storage_harness(
        tmp_path / "PACSREF", settings={"addin_timeout": 3.0},
        extra_addins={"hanging.py": HANGING},
    )  # fmt: skip
    conn = harness.connect()
    proposal = PresentationContextProposal(1, "1.2.826.0.1.3680043.9.7.9", ("1.2.840.10008.1.2",))
    conn.send(associate_rq(contexts=(proposal,)))
    conn.received()
    conn.send(echo_rq(**{"x0002": "1.2.826.0.1.3680043.9.7.9"}))
    assert responses(conn.received()) == []
    harness.clock.advance(3.0)
    assert responses(conn.received())[0][0x0900] == 0x0110
