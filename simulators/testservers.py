"""Reference servers to point the simulators and the suite at: pynetdicom and DCMTK.

The tests (and anyone recording a conformance run) need a known third-party
SCP on a free loopback port, started and stopped with bounded waits. Both
helpers are context managers so a failing test cannot leak a listener.
"""

from __future__ import annotations

import contextlib
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
) -> Iterator[Listener]:
    """Run pynetdicom's AE as a Verification SCP in this process (its own threads).

    ``acse_timeout`` is pynetdicom's ARTIM too, so keep it short in tests.
    """
    ae = AE(ae_title=ae_title)
    ae.add_supported_context(Verification)
    ae.require_called_aet = require_called_aet
    ae.acse_timeout = acse_timeout
    ae.network_timeout = acse_timeout
    ae.maximum_pdu_size = maximum_pdu_size
    port = free_loopback_port()
    server = ae.start_server((LOOPBACK, port), block=False)
    if server is None:  # Only a blocking start_server returns None.
        raise RuntimeError("pynetdicom start_server(block=False) returned no server")
    try:
        if not wait_for_port(LOOPBACK, port, 10.0):
            raise RuntimeError(f"pynetdicom SCP did not listen on {LOOPBACK}:{port}")
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
