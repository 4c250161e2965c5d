"""Reference servers to point the simulators and the suites at: pynetdicom, DCMTK, Orthanc.

The tests (and anyone recording a conformance run) need a known third-party
SCP on a free loopback port, started and stopped with bounded waits: pynetdicom's
AE in this process, DCMTK's storescp and dcmqrscp, and Orthanc, each with the
acceptance policy it can be given. All helpers are context managers so a
failing test cannot leak a listener.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from simulators.netutil import LOOPBACK, free_loopback_port, wait_for_port


@dataclass(frozen=True)
class Listener:
    """Where a started server listens."""

    host: str
    port: int
    ae_title: str


@contextlib.contextmanager
def pynetdicom_echo_scp(
    ae_title: str = "ECHOSCP",
    *,
    require_called_aet: bool = False,
    acse_timeout: float = 5.0,
    maximum_pdu_size: int = 16382,
    maximum_associations: int = 10,
    require_calling_aet: Sequence[str] = (),
    network_timeout: float | None = None,
) -> Iterator[Listener]:
    """Run pynetdicom's AE as a Verification SCP in this process (its own threads).

    ``acse_timeout`` is pynetdicom's ARTIM too, so keep it short in tests.
    ``maximum_associations`` and ``require_calling_aet`` give it an acceptance
    policy (pynetdicom rejects with (2, 3, 2) and (1, 1, 3)), so the policy
    simulators can be tried on an independent server. ``network_timeout`` is
    its idle timeout (None: as ``acse_timeout``).
    """
    ae = AE(ae_title=ae_title)
    ae.add_supported_context(Verification)
    ae.require_called_aet = require_called_aet
    ae.require_calling_aet = list(require_calling_aet)
    ae.maximum_associations = maximum_associations
    ae.acse_timeout = acse_timeout
    ae.network_timeout = acse_timeout if network_timeout is None else network_timeout
    ae.maximum_pdu_size = maximum_pdu_size
    port = free_loopback_port()
    server = ae.start_server((LOOPBACK, port), block=False)
    if server is None:  # Only a blocking start_server returns None.
        raise RuntimeError("pynetdicom start_server(block=False) returned no server")
    try:
        # No connect probe: start_server has already bound and listened (socketserver does
        # both in its constructor), and a probe would leave an acceptor thread behind that
        # pynetdicom counts against maximum_associations for a while.
        yield Listener(LOOPBACK, port, ae_title)
    finally:
        server.shutdown()
        ae.shutdown()


def find_dcmtk(name: str) -> str | None:
    """Path of DCMTK's ``name`` tool, or None.

    pynetdicom installs console scripts with DCMTK's names (``storescp``...)
    that come first on PATH, so /usr/bin is tried first and any other
    candidate must say "dcmtk" or "OFFIS" in its ``--version``.
    """
    candidates = [f"/usr/bin/{name}"]
    found = shutil.which(name)
    if found:
        candidates.append(found)
    for path in candidates:
        if not os.access(path, os.X_OK):
            continue
        try:
            out = subprocess.run(
                [path, "--version"], capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        text = (out.stdout + out.stderr).lower()
        if "dcmtk" in text or "offis" in text:
            return path
    return None


def dcmtk_version(path: str) -> str:
    """The first line of ``path --version`` (e.g. ``$dcmtk: storescp v3.6.7 2022-04-22 $``)."""
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
    return (out.stdout or out.stderr).splitlines()[0].strip()


@contextlib.contextmanager
def dcmtk_storescp(
    output_dir: Path,
    ae_title: str = "STORESCP",
    *,
    acse_timeout: int = 2,
    extra_args: Sequence[str] = ("--fork",),
    storescp: str | None = None,
) -> Iterator[Listener]:
    """Run DCMTK's storescp on a free loopback port; stop it (and its children) on exit.

    ``--fork`` is the default because the suite runs its ARTIM checks beside
    the others, and single-process storescp serves one connection at a time.
    storescp has no bind-address option, so it listens on every interface;
    only loopback is ever used to reach it. Raises FileNotFoundError without DCMTK.
    """
    path = storescp or find_dcmtk("storescp")
    if path is None:
        raise FileNotFoundError("DCMTK storescp not found")
    port = free_loopback_port()
    command = [
        path,
        "--aetitle",
        ae_title,
        "--acse-timeout",
        str(acse_timeout),
        "--output-directory",
        str(output_dir),
        *extra_args,
        str(port),
    ]
    log = open(output_dir / "storescp.log", "wb")  # noqa: SIM115 - closed in finally
    # A session of its own, so teardown can signal storescp's forked children too.
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        if not wait_for_port(LOOPBACK, port, 10.0):
            raise RuntimeError(f"storescp did not listen on port {port}: {command}")
        yield Listener(LOOPBACK, port, ae_title)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        log.close()


def dcmqrscp_config(
    port: int,
    ae_title: str,
    storage_dir: Path,
    peers: Sequence[tuple[str, str]],
    *,
    max_associations: int = 16,
) -> str:
    """A ``dcmqrscp.cfg`` serving ``ae_title`` to ``peers`` only (``(AE title, host name)``).

    DCMTK's AETable names the AE titles dcmqrscp *serves*; its Peers column is the only
    access control it has: a calling AE title must be listed there (with the host it may call
    from, by name: the file format takes no IP addresses). MaxAssociations is its Max Clients.
    """
    hosts = [f"peer{n} = ({title}, {host}, 104)" for n, (title, host) in enumerate(peers, 1)]
    names = ", ".join(f"peer{n}" for n in range(1, len(peers) + 1))
    return "\n".join(
        [
            f"NetworkTCPPort  = {port}",
            "MaxPDUSize      = 16384",
            f"MaxAssociations = {max_associations}",
            "",
            "HostTable BEGIN",
            *hosts,
            f"known = {names}",
            "HostTable END",
            "",
            "VendorTable BEGIN",
            "VendorTable END",
            "",
            "AETable BEGIN",
            f"{ae_title}  {storage_dir}  RW  (10, 1024mb)  known",
            "AETable END",
            "",
        ]
    )


@contextlib.contextmanager
def _process_listening(
    command: Sequence[str], port: int, log_path: Path, ae_title: str, name: str
) -> Iterator[Listener]:
    """Run ``command`` in a session of its own until the block ends; wait for its port.

    A session of its own so that teardown reaches forked children too (SIGTERM to the
    group, SIGKILL if it lingers).
    """
    log = open(log_path, "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        if not wait_for_port(LOOPBACK, port, 20.0):
            raise RuntimeError(f"{name} did not listen on port {port}: {command}")
        yield Listener(LOOPBACK, port, ae_title)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        log.close()


@contextlib.contextmanager
def dcmtk_dcmqrscp(
    workdir: Path,
    ae_title: str = "DCMQRSCP",
    *,
    peers: Sequence[tuple[str, str]] = (("CT_ROOM_1", "localhost"),),
    max_associations: int = 3,
    acse_timeout: int = 5,
    dcmqrscp: str | None = None,
) -> Iterator[Listener]:
    """Run DCMTK's dcmqrscp (forking, the default) on a free port with the policy given.

    Like storescp it has no bind-address option and listens on every interface; only
    loopback is used to reach it. Raises FileNotFoundError without DCMTK.
    """
    path = dcmqrscp or find_dcmtk("dcmqrscp")
    if path is None:
        raise FileNotFoundError("DCMTK dcmqrscp not found")
    port = free_loopback_port()
    storage = workdir / "db" / ae_title
    storage.mkdir(parents=True, exist_ok=True)
    config = workdir / "dcmqrscp.cfg"
    config.write_text(
        dcmqrscp_config(port, ae_title, storage, peers, max_associations=max_associations)
    )
    command = [path, "-c", str(config), "-ll", "info", "--acse-timeout", str(acse_timeout)]
    log = workdir / "dcmqrscp.log"
    with _process_listening(command, port, log, ae_title, "dcmqrscp") as listener:
        yield listener


def find_orthanc() -> str | None:
    """Path of the Orthanc server (Debian: /usr/sbin/Orthanc), or None."""
    return shutil.which("Orthanc") or shutil.which("Orthanc", path="/usr/sbin")


def orthanc_config(
    port: int,
    ae_title: str,
    storage_dir: Path,
    modalities: Sequence[tuple[str, str]],
) -> dict[str, object]:
    """An Orthanc configuration that knows only ``modalities`` (``(AE title, IP)``).

    Orthanc's defaults answer any calling AE title's C-ECHO (DicomAlwaysAllowEcho) and do not
    compare a modality's address (DicomCheckModalityHost); both are turned off, so its
    acceptance is by AE title *and* host, like an "allow anonymous off" server. No HTTP server,
    no plugins.
    """
    return {
        "Name": "pacsref policy run",
        "StorageDirectory": str(storage_dir),
        "IndexDirectory": str(storage_dir),
        "Plugins": [],
        "HttpServerEnabled": False,
        "DicomServerEnabled": True,
        "DicomAet": ae_title,
        "DicomPort": port,
        "DicomCheckCalledAet": True,
        "DicomAlwaysAllowEcho": False,
        "DicomAlwaysAllowStore": False,
        "DicomCheckModalityHost": True,
        "DicomModalities": {
            f"peer{n}": [title, ip, 104] for n, (title, ip) in enumerate(modalities, 1)
        },
        "DicomScpTimeout": 5,
    }


@contextlib.contextmanager
def orthanc_scp(
    workdir: Path,
    ae_title: str = "ORTHANC",
    *,
    modalities: Sequence[tuple[str, str]] = (("CT_ROOM_1", LOOPBACK),),
    orthanc: str | None = None,
) -> Iterator[Listener]:
    """Run Orthanc on a free port with the configuration above. FileNotFoundError without it."""
    path = orthanc or find_orthanc()
    if path is None:
        raise FileNotFoundError("Orthanc not found (apt-get install orthanc)")
    port = free_loopback_port()
    storage = workdir / "db"
    storage.mkdir(parents=True, exist_ok=True)
    config = workdir / "orthanc.json"
    config.write_text(json.dumps(orthanc_config(port, ae_title, storage, modalities), indent=2))
    with _process_listening(
        [path, str(config)], port, workdir / "orthanc.log", ae_title, "Orthanc"
    ) as x:
        yield x
