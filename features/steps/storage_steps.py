"""Steps of the Storage feature: storing with pynetdicom or a raw peer, then looking at disk.

What is "stored and indexed" is judged from outside the server: the files under
``<server dir>/data`` and the rows of its SQLite index, read with the standard library, and
what ``pacsref server check`` prints. The ``pacsref`` commands run as in manager_steps.py (a
subprocess, ``--root`` the scenario server's root folder, the outcome in ``context.done``), so
that module's Then steps about a command's outcome apply to them too.
"""

from __future__ import annotations

import os
import select
import shlex
import signal
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from stat import S_ISDIR
from typing import Any

from admin_support import WAIT_S, child_env
from behave import given, then, when
from pydicom import dcmread
from scenario_support import configured_server

from pacsref.testing.twistd import TwistdServer
from simulators.commands import CONTROL_COMMAND, CONTROL_LAST, c_echo_rq, c_store_rq
from simulators.misbehaving import RawPeer
from simulators.pdus import A_ABORT, IMPLICIT_VR_LE, VERIFICATION, abort, p_data
from tests.storage.dicomgen import make_study
from tests.storage.helpers import dataset_bytes

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"

#: A ``pacsref`` command may open the index and load the server's add-ins.
COMMAND_TIMEOUT_S = 60.0

#: Placeholder in a command's expected output: the stored file of the image the scenario sent.
THAT_IMAGES_FILE = "<the file of that image>"


def _server(context: Any) -> TwistdServer:
    server: TwistdServer = context.pacsref_server
    return server.start()


def _files(context: Any, count: int, series: int = 1) -> list[Path]:
    folder = Path(tempfile.mkdtemp(prefix="pacsref-storage-"))
    context.add_cleanup(lambda: subprocess.run(["rm", "-rf", str(folder)], check=False))
    per_series = max(1, count // series)
    return make_study(folder, series=series, per_series=per_series).files


def _associate(server: TwistdServer, calling: str) -> Any:
    """A pynetdicom association from ``calling`` with one CT Image Storage context."""
    from pynetdicom import AE

    ae = AE(ae_title=calling)
    ae.add_requested_context(CT_IMAGE, EXPLICIT)
    assoc = ae.associate(*server.address, ae_title=server.ae_title)
    assert assoc.is_established, "association refused"
    return assoc


def _store(context: Any, calling: str, files: list[Path]) -> list[int]:
    assoc = _associate(_server(context), calling)
    try:
        return [int(assoc.send_c_store(path).Status) for path in files]
    finally:
        assoc.release()


@given('the storage option "{key}" is "{value}"')
def step_storage_option(context: Any, key: str, value: str) -> None:
    """Write the option into ``addin-options/storage.toml`` before the first start."""
    _write_option(context, key, f'"{value}"')


@given('the storage option "{key}" is true')
def step_storage_option_true(context: Any, key: str) -> None:
    """A boolean option, on."""
    _write_option(context, key, "true")


@given('the storage option "{key}" is a terabyte more than the disk has free')
def step_storage_option_above_free(context: Any, key: str) -> None:
    """A free-space reserve no disk here meets, whatever else writes meanwhile."""
    server = configured_server(context)
    if not server.server_dir.exists():
        server.create()
    stats = os.statvfs(server.server_dir)
    _write_option(context, key, str(stats.f_bavail * stats.f_frsize // 2**20 + 2**20))


def _write_option(context: Any, key: str, toml_value: str) -> None:
    server = configured_server(context)
    if not server.server_dir.exists():
        server.create()
    options = server.server_dir / "addin-options" / "storage.toml"
    options.parent.mkdir(exist_ok=True)
    with options.open("a", encoding="utf-8") as out:
        out.write(f"{key} = {toml_value}\n")


@when(
    'the modality "{calling}" stores a study of {series:d} series of {per:d} images with pynetdicom'
)
def step_store_study(context: Any, calling: str, series: int, per: int) -> None:
    """Generate a study with pydicom and store it on one association."""
    context.sent = _files(context, series * per, series)
    context.statuses = _store(context, calling, context.sent)


@then(
    'the modality "{calling}" can store a study of {series:d} series of {per:d} images '
    "with pynetdicom"
)
def step_can_store(context: Any, calling: str, series: int, per: int) -> None:
    """Storing still works (e.g. after a restart)."""
    assert set(_store(context, calling, _files(context, series * per, series))) == {0}


@when(
    'the modality "{calling}" stores {count:d} images on one association with pynetdicom, '
    "the server's temporary directory gone during the second"
)
def step_store_tmp_gone(context: Any, calling: str, count: int) -> None:
    """Move the server's spool directory away for the second store only, then back.

    A disk that fails writes cannot be made without root; a missing directory fails the
    spool file's creation the same way (an OSError in the DIMSE layer), so the same path runs.
    """
    server = _server(context)
    tmp = server.server_dir / "tmp"
    away = server.server_dir / "tmp-moved-away"
    files = _files(context, count)
    assoc = _associate(server, calling)
    context.statuses, context.comments = [], []
    try:
        for n, path in enumerate(files):
            if n == 1:
                tmp.rename(away)
            try:
                reply = assoc.send_c_store(path)
            finally:
                if n == 1:
                    away.rename(tmp)
            assert "Status" in reply, f"no C-STORE-RSP for image {n + 1}: association lost"
            context.statuses.append(int(reply.Status))
            context.comments.append(str(reply.get("ErrorComment", "")))
        context.still_associated = assoc.is_established
    finally:
        assoc.release()


@then("the stores get statuses {statuses}")
def step_statuses(context: Any, statuses: str) -> None:
    """The C-STORE-RSPs had these statuses, in order."""
    expected = [int(s.strip(), 16) for s in statuses.split(",")]
    assert context.statuses == expected, [hex(s) for s in context.statuses]


@then('the refused store\'s error comment says "{text}"')
def step_error_comment(context: Any, text: str) -> None:
    """The Error Comment of the one non-success response."""
    [comment] = [c for c, s in zip(context.comments, context.statuses, strict=True) if s]
    assert comment == text, comment


@then("the association was still open after the last store")
def step_still_open(context: Any) -> None:
    """The server answered every store on the same association (no A-ABORT)."""
    assert context.still_associated


@when('the modality "{calling}" sends the same image again')
def step_store_again(context: Any, calling: str) -> None:
    """The first image once more, on a new association."""
    context.statuses = _store(context, calling, context.sent[:1])


@when(
    'the modality "{calling}" sends {count:d} more images of that study with Patient ID '
    '"{patient_id}"'
)
def step_store_corrected(context: Any, calling: str, count: int, patient_id: str) -> None:
    """New images of the study sent last (new SOP Instance UIDs), under another Patient ID."""
    from pydicom.uid import generate_uid

    folder = Path(tempfile.mkdtemp(prefix="pacsref-storage-"))
    context.add_cleanup(lambda: subprocess.run(["rm", "-rf", str(folder)], check=False))
    files = []
    for n, path in enumerate(context.sent[:count]):
        ds = dcmread(path)
        ds.PatientID = patient_id
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(folder / f"{n}.dcm", enforce_file_format=True)
        files.append(folder / f"{n}.dcm")
    context.statuses += _store(context, calling, files)


@then('the index holds one patient, "{patient_id}", with the study')
def step_one_patient(context: Any, patient_id: str) -> None:
    """The index's patient rows (no other, none without studies) and the study's patient."""
    study = dcmread(context.sent[0]).StudyInstanceUID
    with sqlite3.connect(_server(context).server_dir / "data" / "index.sqlite") as db:
        patients = db.execute("SELECT patient_id FROM patient").fetchall()
        owner = db.execute(
            "SELECT p.patient_id FROM study s JOIN patient p ON p.id = s.patient_fk"
            " WHERE s.study_instance_uid = ?",
            (study,),
        ).fetchall()
    assert patients == [(patient_id,)], patients
    assert owner == [(patient_id,)], owner


@when('a raw peer stores an image with SOP Instance UID "{uid}"')
def step_raw_bad_uid(context: Any, uid: str) -> None:
    """A C-STORE-RQ whose command names ``uid``, sent by a peer that validates nothing."""
    data = dataset_bytes(_files(context, 1)[0])
    context.tree_before = _tree(_server(context))
    with _raw_peer(context) as peer:
        peer.send_bytes(_store_pdus(uid, data, len(data)))
        command = peer.read_command(1)
    from pacsref.dimse import decode_command

    context.statuses = [int(decode_command(command)[0x0900])]  # type: ignore[call-overload]


@when("a raw peer sends half of an image and then aborts the association")
def step_raw_abort(context: Any) -> None:
    """Command and half the data set, then A-ABORT; wait until the server closes."""
    path = _files(context, 1)[0]
    data = dataset_bytes(path)
    uid = dcmread(path, stop_before_pixels=True).SOPInstanceUID
    with _raw_peer(context) as peer:
        peer.send_bytes(_store_pdus(uid, data, len(data) // 2))
        peer.send_bytes(abort())
        assert peer.wait_closed(10.0), "the server did not close after the A-ABORT"


@contextmanager
def _raw_peer(context: Any) -> Iterator[RawPeer]:
    """A raw peer associated with one CT Image Storage context (ID 1), closed afterwards."""
    server = _server(context)
    with RawPeer(*server.address) as peer:
        reply = peer.associate(server.ae_title, "RAWPEER", contexts=((1, CT_IMAGE, (EXPLICIT,)),))
        assert type(reply).__name__ == "AssociateAC", reply
        yield peer


def _store_pdus(uid: str, data: bytes, send: int) -> bytes:
    """A C-STORE-RQ for ``uid`` (written as given, however long) and ``send`` bytes of
    ``data`` in P-DATA-TF PDUs of one PDV each."""
    out = p_data([(1, CONTROL_COMMAND | CONTROL_LAST, c_store_rq(CT_IMAGE, uid))])
    step = 8000
    for start in range(0, send, step):
        end = min(start + step, send)
        piece = data[start:end]
        last = end == len(data)
        out += p_data([(1, CONTROL_LAST if last else 0, piece)])
    return out


@when("a raw peer sends an image and, before its answer, a C-ECHO")
def step_raw_second_request(context: Any) -> None:
    """The image's last data set fragment and a C-ECHO-RQ in one P-DATA-TF: a second
    operation invoked before the first is answered (the window is 1, PS3.7 D.3.3.3)."""
    path = _files(context, 1)[0]
    data = dataset_bytes(path)
    uid = dcmread(path, stop_before_pixels=True).SOPInstanceUID
    server = _server(context)
    with RawPeer(*server.address) as peer:
        contexts = ((1, CT_IMAGE, (EXPLICIT,)), (3, VERIFICATION, (IMPLICIT_VR_LE,)))
        reply = peer.associate(server.ae_title, "RAWPEER", contexts=contexts)
        assert type(reply).__name__ == "AssociateAC", reply
        tail = 1000
        peer.send_bytes(_store_pdus(uid, data, len(data) - tail))
        peer.send_bytes(
            p_data([(1, CONTROL_LAST, data[-tail:]), (3, CONTROL_COMMAND | CONTROL_LAST,
                                                      c_echo_rq(2))])
        )  # fmt: skip
        context.reaction = peer.react(WAIT_S, until=frozenset({A_ABORT}))


@then("the server aborts that association")
def step_server_aborted(context: Any) -> None:
    reaction = context.reaction
    assert reaction.aborts, reaction.describe()


@when("the server is killed with SIGKILL and started again")
def step_kill_restart(context: Any) -> None:
    """kill -9 the twistd process (by its PID), then start the same server directory."""
    server: TwistdServer = context.pacsref_server
    server.kill()
    server.start()


@when(
    'the modality "{calling}" stores 1 image with pynetdicom and the association is cut '
    "before any answer"
)
def step_store_cut(context: Any, calling: str) -> None:
    """One C-STORE that gets no C-STORE-RSP: the association ends under it (A-P-ABORT)."""
    server = _server(context)
    context.server_pid = server.pid
    context.sent = _files(context, 1)
    assoc = _associate(server, calling)
    try:
        reply = assoc.send_c_store(context.sent[0])
    finally:
        if assoc.is_established:
            assoc.release()
    assert "Status" not in reply, f"the store was answered: status {int(reply.Status):#06x}"
    assert assoc.is_aborted, "the association was not cut, yet the store got no answer"


@then("the server process was killed by SIGKILL")
def step_killed_by_sigkill(context: Any) -> None:
    """The twistd process ended, killed by SIGKILL; waited for on a pidfd, not by sleeping.

    The process is this one's child and not reaped yet (nothing polled it since the store), so
    its id still names it; ``WNOWAIT`` leaves it for :class:`TwistdServer` to reap.
    """
    pid = context.server_pid
    pidfd = os.pidfd_open(pid)
    try:
        ended, _, _ = select.select([pidfd], [], [], WAIT_S)
        assert ended, f"the server process {pid} still runs {WAIT_S:g} s after the store"
        how = os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOWAIT)
    finally:
        os.close(pidfd)
    assert how is not None and how.si_code == os.CLD_KILLED, how
    assert how.si_status == signal.SIGKILL, f"killed by signal {how.si_status}, not SIGKILL"


@when("the server is started again")
def step_start_again(context: Any) -> None:
    """Start the same server directory (after its process ended)."""
    server: TwistdServer = context.pacsref_server
    assert not server.running, "the server still runs"
    server.start()


@when('the administrator runs "{command}"')
def step_admin_runs(context: Any, command: str) -> None:
    """One ``pacsref`` command about the scenario's server, run to its end (bounded)."""
    _pacsref(context, command)


@then("it ends with exit status {code:d}, printing exactly")
def step_exit_status_exactly(context: Any, code: int) -> None:
    """The exit status, nothing on standard error, and standard output the docstring's lines.

    ``<the file of that image>`` stands for the stored file of the image the scenario sent.
    """
    done = context.done
    expected = context.text.replace(THAT_IMAGES_FILE, str(_file_of_sent_image(context)))
    shown = f"`{context.command}` exit {done.returncode}\nstdout:\n{done.stdout}"
    shown += f"stderr:\n{done.stderr}"
    assert done.returncode == code and done.stderr == "", shown
    assert done.stdout.splitlines() == expected.splitlines(), f"{shown}\nexpected:\n{expected}"


def _pacsref(context: Any, command: str) -> subprocess.CompletedProcess[str]:
    """Run ``pacsref ARGS`` with ``--root`` the scenario server's root folder."""
    words = shlex.split(command)
    assert words[:1] == ["pacsref"], f"not a pacsref command: {command}"
    root = str(context.pacsref_server.server_dir.parent)
    done = subprocess.run(
        [sys.executable, "-m", "pacsref.manager.cli", "--root", root, *words[1:]],
        cwd=root, env=child_env(), capture_output=True, text=True,
        timeout=COMMAND_TIMEOUT_S, check=False,
    )  # fmt: skip
    context.command, context.done = command, done
    return done


def _file_of_sent_image(context: Any) -> Path:
    """The one file under ``data/`` named after the SOP Instance UID of the image sent."""
    uid = dcmread(context.sent[0], stop_before_pixels=True).SOPInstanceUID
    data = context.pacsref_server.server_dir / "data"
    found = list(data.glob(f"*/{uid}.dcm"))
    assert len(found) == 1, f"files of {uid} under {data}: {found}"
    return found[0]


@then("every store succeeds")
def step_all_success(context: Any) -> None:
    """Every C-STORE-RSP said 0x0000."""
    assert set(context.statuses) == {0}, [hex(s) for s in context.statuses]


@then("every store gets status {status}")
def step_all_status(context: Any, status: str) -> None:
    """Every C-STORE-RSP had ``status``."""
    assert set(context.statuses) == {int(status, 16)}, [hex(s) for s in context.statuses]


@then("the second store gets status {status}")
@then("the store gets status {status}")
def step_status(context: Any, status: str) -> None:
    """The last C-STORE-RSP had ``status``."""
    assert context.statuses[-1] == int(status, 16), hex(context.statuses[-1])


@then('the server holds {count:d} stored and indexed images from "{calling}"')
def step_holds(context: Any, count: int, calling: str) -> None:
    """As many files under data/ as index rows, all from ``calling``."""
    data = _server(context).server_dir / "data"
    files = list(data.glob("*/*.dcm"))
    with sqlite3.connect(data / "index.sqlite") as db:
        rows = db.execute("SELECT calling_ae FROM instance").fetchall()
    assert len(files) == count, files
    assert rows == [(calling,)] * count, rows


@then("the storage check reports that index and files agree")
def step_check(context: Any) -> None:
    """``pacsref server check NAME`` exits 0 and says so."""
    done = _pacsref(context, f"pacsref server check {_server(context).ae_title}")
    assert done.returncode == 0 and "index and files agree" in done.stdout, done


@then("the server's temporary directory is empty")
def step_tmp_empty(context: Any) -> None:
    """No spool file is left of the aborted transfer."""
    tmp = _server(context).server_dir / "tmp"
    assert list(tmp.iterdir()) == []


#: What the server may write while it serves: its logs and its index (``data/index.sqlite``
#: and SQLite's journal files beside it), relative to the server's root folder.
WRITTEN_WHILE_SERVING = ("{ae}.twistd.log", "{ae}/logs/*", "{ae}/data/index.sqlite*")


def _tree(server: TwistdServer) -> dict[Path, tuple[int, int] | None]:
    """Every path under the server's root folder (its directory and what lies beside it).

    Files map to (size, mtime in ns), so a rewritten file shows; directories to None (their
    mtime changes with every spool file). A path gone while the walk runs (SQLite's journal
    files come and go) is left out.
    """
    tree: dict[Path, tuple[int, int] | None] = {}
    for path in server.server_dir.parent.rglob("*"):
        try:
            stat = path.lstat()
        except FileNotFoundError:
            continue
        tree[path] = None if S_ISDIR(stat.st_mode) else (stat.st_size, stat.st_mtime_ns)
    return tree


@then("nothing was written in the server directory or beside it, except its logs and index")
def step_nothing_written(context: Any) -> None:
    """No path appeared or changed under the server's root folder outside its known places.

    A SOP Instance UID that became a path (``../../1.2.3``) would put a file there, however
    many ``..`` it holds, up to the root folder.
    """
    server = _server(context)
    root = server.server_dir.parent
    known = [pattern.format(ae=server.ae_title) for pattern in WRITTEN_WHILE_SERVING]
    before, after = context.tree_before, _tree(server)
    written = sorted(
        str(path.relative_to(root))
        for path, stat in after.items()
        if before.get(path, "new") != stat
        and not any(path.relative_to(root).match(pattern) for pattern in known)
    )
    assert written == [], f"written under {root}: {written}"
