"""Message notification after a store, and the add-in timeout on a nonblocking Deferred."""

from __future__ import annotations

import os
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


def test_each_notification_carries_the_version_its_store_stored(tmp_path: Path) -> None:
    """With duplicates = "overwrite", a second store of the instance may replace the file
    before the first notification is read on the pool; the first still gets the version
    it stored (it was read through the file as it was when its response was decided),
    not the second one twice."""
    harness = storage_harness(
        tmp_path / "PACSREF",
        options='duplicates = "overwrite"\n',
        extra_addins={"listener.py": LISTENER.format(instances="listener = Listener()")},
    )
    uid, study, series = (generate_uid(ROOT) for _ in range(3))
    connection = associate(harness)
    for number in (1, 2):
        path = make_instance(tmp_path / f"{number}.dcm", study_uid=study, series_uid=series,
                             number=number, sop_uid=uid)  # fmt: skip
        [response] = send_store(connection, uid, dataset_bytes(path), message_id=number)
        assert response[0x0900] == 0
    harness.clock.advance(0)
    harness.threadpool.run_all()
    listener = next(a for a in harness.server.addins if a.name == "listener")
    seen = __import__(type(listener).__module__, fromlist=["SEEN"]).SEEN
    assert [(m.message_id, m.dataset.InstanceNumber) for m in seen] == [(1, 1), (2, 2)]
    stored = dcmread(seen[1].dataset_path)
    assert stored.InstanceNumber == 2  # and the file in place is the second version


@pytest.mark.parametrize(
    ("durability", "inline"),
    [("fsync", False), ("fsync", True), ("relaxed", True)],
    ids=["pool", "durable-inline", "relaxed-inline"],
)
def test_the_storage_addin_hands_over_the_stored_file_opened_only_when_it_can_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, durability: str, inline: bool
) -> None:
    """With subscribers and duplicates = "overwrite", the add-in opens the file it stored
    under the instance's lock (on the pool and on the reactor thread alike), so no overwrite
    between its commit and the server's handling of its outcome can swap the version. Under
    keep-first (nothing replaces a stored file), and without subscribers, nothing is opened:
    a notification waiting for the pool holds no descriptor it does not need."""
    from pacsref.server.message_notification import MessageNotifier

    handed: list[object] = []
    notify = MessageNotifier.notify

    def recording(self: MessageNotifier, *args: object, **kwargs: object) -> None:
        handed.append(kwargs.get("opened"))
        notify(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(MessageNotifier, "notify", recording)
    for name, subscribers, policy in (
        ("pinned", True, "overwrite"),
        ("kept", True, "keep-first"),
        ("alone", False, "overwrite"),
    ):
        extra = {"listener.py": LISTENER.format(instances="listener = Listener()")}
        harness = storage_harness(
            tmp_path / name,
            options=f'durability = "{durability}"\nduplicates = "{policy}"\n',
            extra_addins=extra if subscribers else None,
            durable_inline=inline,
        )
        path = make_instance(tmp_path / f"{name}.dcm", study_uid=generate_uid(ROOT),
                             series_uid=generate_uid(ROOT))  # fmt: skip
        uid = dcmread(path).SOPInstanceUID
        [response] = send_store(associate(harness), uid, dataset_bytes(path))
        assert response[0x0900] == 0
        [opened] = handed
        if name == "pinned":
            assert opened is not None and not opened.closed  # type: ignore[attr-defined]
            stored = next((tmp_path / name / "data").glob("*/*.dcm"))
            assert os.fstat(opened.fileno()).st_ino == stored.stat().st_ino  # type: ignore[attr-defined]
            harness.clock.advance(0)
            harness.threadpool.run_all()
            assert opened.closed  # type: ignore[attr-defined]  # the notifier closed it
        else:
            assert opened is None, name
        handed.clear()


def test_notifications_waiting_for_the_pool_hold_at_most_max_pinned_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow subscriber must not run the server out of descriptors: past MAX_PINNED
    notifications holding a file, stores are read by path (and still notified, each with
    its data set)."""
    from pacsref.server import message_notification

    monkeypatch.setattr(message_notification, "MAX_PINNED", 3)
    harness = storage_harness(
        tmp_path / "PACSREF",
        options='duplicates = "overwrite"\n',
        extra_addins={"listener.py": LISTENER.format(instances="listener = Listener()")},
    )
    server_dir = tmp_path / "PACSREF"

    def stored_files_open() -> int:
        fds = Path("/proc/self/fd")
        return sum(
            1
            for fd in fds.iterdir()
            if str(os.path.realpath(fd)).startswith(str(server_dir / "data") + "/")
            and str(os.path.realpath(fd)).endswith(".dcm")
        )

    connection = associate(harness)
    study, series = generate_uid(ROOT), generate_uid(ROOT)
    for number in range(1, 9):
        path = make_instance(tmp_path / f"{number}.dcm", study_uid=study, series_uid=series,
                             number=number)  # fmt: skip
        uid = dcmread(path).SOPInstanceUID
        [response] = send_store(connection, uid, dataset_bytes(path), message_id=number)
        assert response[0x0900] == 0
    assert stored_files_open() == 3
    harness.clock.advance(0)
    harness.threadpool.run_all()
    assert stored_files_open() == 0
    listener = next(a for a in harness.server.addins if a.name == "listener")
    seen = __import__(type(listener).__module__, fromlist=["SEEN"]).SEEN
    assert [m.dataset.InstanceNumber for m in seen] == list(range(1, 9))
