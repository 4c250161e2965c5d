"""Find and drive DCMTK's command-line tools, the reference peers our server is judged by.

DCMTK is an independent implementation of PS3.7/PS3.8: an echo that DCMTK's ``echoscu`` accepts is
evidence of interoperability, not of self-consistency. Finding it needs care, because pynetdicom
installs Python console scripts with the same names (``echoscu``, ``storescp``, ...) that usually
come first on PATH; ``shutil.which("echoscu")`` would silently test pynetdicom against us.

Whether a missing DCMTK skips or fails is a policy: on a developer machine a skip with the
install command is friendly; under ``CI=true`` a skip would hide that the interop suite never ran,
so it fails instead.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

#: Where Debian's ``dcmtk`` package puts the tools; checked first.
SYSTEM_BIN = Path("/usr/bin")

#: A-ASSOCIATE-RJ words DCMTK 3.6.x prints (``ASC_printRejectParameters``) -> PS3.8 Table 9-21
#: codes, so callers compare numbers, not DCMTK's spelling.
REJECT_RESULTS = {"rejected permanent": 1, "rejected transient": 2}
REJECT_SOURCES = {
    "service user": 1,
    "service provider (acse related)": 2,
    "service provider (presentation related)": 3,
}
REJECT_REASONS = {
    1: {
        "no reason": 1,
        "app context name not supported": 2,
        "calling ae title not recognized": 3,
        "called ae title not recognized": 7,
    },
    2: {"no reason": 1, "protocol version not supported": 2},
    3: {"temporary congestion": 1, "local limit exceeded": 2},
}

_REJECT_RE = re.compile(
    r"Association Rejected.*?Result:\s*(?P<result>[^,\n]+),\s*Source:\s*(?P<source>[^\n]+?)\s*\n"
    r".*?Reason:\s*(?P<reason>[^\n]+)",
    re.DOTALL | re.IGNORECASE,
)


def _is_dcmtk(path: str) -> bool:
    """True if ``path`` is an executable whose ``--version`` names DCMTK (or OFFIS, its authors).

    Scripts (``#!``) are skipped without running them: DCMTK tools are compiled binaries, while
    pynetdicom's console scripts and pyenv shims are scripts that take a Python start-up to run.
    """
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        return False
    try:
        with open(path, "rb") as handle:
            if handle.read(2) == b"#!":
                return False
        version = subprocess.run(
            [path, "--version"],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    banner = (version.stdout + version.stderr).lower()
    return "dcmtk" in banner or "offis" in banner


@functools.cache
def dcmtk_tool(name: str) -> str | None:
    """Absolute path of DCMTK's ``name`` (e.g. ``"echoscu"``), or None when DCMTK is not installed.

    ``/usr/bin/NAME`` is preferred; otherwise every PATH entry is tried in order, skipping
    same-named tools that are not DCMTK. Cached: each candidate costs a process start.
    """
    candidates = [str(SYSTEM_BIN / name)]
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        if entry:
            candidates.append(os.path.join(entry, name))
    seen: set[str] = set()
    for candidate in candidates:
        real = os.path.realpath(candidate)
        if real in seen:
            continue
        seen.add(real)
        if _is_dcmtk(candidate):
            return os.path.abspath(candidate)
    return None


def missing_reason(name: str) -> str:
    """The message shown when DCMTK's ``name`` is missing; it says how to fix it."""
    return f"DCMTK {name} not installed: apt-get install dcmtk"


def in_ci() -> bool:
    """True when running under CI (``CI=true``), where a missing reference peer is an error."""
    return os.environ.get("CI") == "true"


def require_dcmtk(name: str) -> str:
    """For pytest: the path of DCMTK's ``name``; skip the test if it is missing (fail under CI).

    A skipped interop test on CI would let a broken install step pass unnoticed, hence the fail.
    """
    import pytest  # deferred: pacsref.testing is also used outside pytest (bench, behave)

    path = dcmtk_tool(name)
    if path is not None:
        return path
    if in_ci():
        pytest.fail(missing_reason(name))
    pytest.skip(missing_reason(name))


def parse_rejection(output: str) -> tuple[int, int, int] | None:
    """The A-ASSOCIATE-RJ ``(result, source, reason)`` an ``echoscu`` run printed, if any.

    DCMTK 3.6.7 prints, e.g.::

        F: Association Rejected:
        F: Result: Rejected Permanent, Source: Service User
        F: Reason: Called AE Title Not Recognized

    Unknown words map to 0, so a changed spelling shows up as a mismatch rather than as "no
    rejection".
    """
    match = _REJECT_RE.search(output)
    if match is None:
        return None
    result = REJECT_RESULTS.get(match["result"].strip().lower(), 0)
    source = REJECT_SOURCES.get(match["source"].strip().lower(), 0)
    reason_text = match["reason"].strip().strip("()").lower()
    reason = REJECT_REASONS.get(source, {}).get(reason_text, 0)
    return (result, source, reason)


@dataclass(frozen=True)
class DcmtkResult:
    """What one DCMTK client run did: its exit code, combined output and any rejection."""

    returncode: int
    output: str
    rejection: tuple[int, int, int] | None

    @property
    def ok(self) -> bool:
        """True when everything it was asked succeeded (DCMTK's clients exit 0 only then)."""
        return self.returncode == 0


def run_echoscu(
    host: str,
    port: int,
    called_ae: str,
    calling_ae: str = "ECHOSCU",
    *,
    repeat: int = 1,
    timeout_s: float = 60.0,
    echoscu: str | None = None,
    env: Mapping[str, str] | None = None,
) -> DcmtkResult:
    """Run DCMTK ``echoscu`` once (``repeat`` C-ECHOs on one association) and report the outcome.

    Connection and ACSE timeouts are passed to echoscu and the whole run is bounded by
    ``timeout_s``, so a silent server fails the caller instead of hanging it.

    ``TCP_NODELAY=1`` is set for echoscu unless ``env`` says otherwise: DCMTK reads it from the
    environment, and without it Nagle's algorithm on echoscu's two writes per message meets the
    peer's delayed ACK, so every echo costs about 40 ms whatever the server does.

    Raises:
        FileNotFoundError: DCMTK's echoscu is not installed and ``echoscu`` was not given.
        subprocess.TimeoutExpired: the run took longer than ``timeout_s``.
    """
    options = ["--repeat", str(repeat)] if repeat != 1 else []
    return _run(
        "echoscu", echoscu, calling_ae, called_ae, options, [host, str(port)], timeout_s, env
    )


def run_storescu(
    host: str,
    port: int,
    called_ae: str,
    files: Sequence[str | os.PathLike[str]],
    calling_ae: str = "STORESCU",
    *,
    options: Sequence[str] = (),
    timeout_s: float = 60.0,
    storescu: str | None = None,
) -> DcmtkResult:
    """Run DCMTK ``storescu`` once, storing ``files`` on one association, with ``options``
    before the address (e.g. ``("--user", "alice", "--password", "s", "--pos-response")``);
    bounded and with ``TCP_NODELAY`` as :func:`run_echoscu`.

    Raises:
        FileNotFoundError: DCMTK's storescu is not installed and ``storescu`` was not given.
        subprocess.TimeoutExpired: the run took longer than ``timeout_s``.
    """
    operands = [host, str(port), *(os.fspath(f) for f in files)]
    return _run("storescu", storescu, calling_ae, called_ae, options, operands, timeout_s, None)


def _run(
    name: str,
    tool: str | None,
    calling_ae: str,
    called_ae: str,
    options: Sequence[str],
    operands: Sequence[str],
    timeout_s: float,
    env: Mapping[str, str] | None,
) -> DcmtkResult:
    tool = tool or dcmtk_tool(name)
    if tool is None:
        raise FileNotFoundError(missing_reason(name))
    bounded = str(max(1, int(timeout_s)))
    argv = [tool, "-to", bounded, "-ta", bounded, "-aet", calling_ae, "-aec", called_ae]
    completed = subprocess.run(
        [*argv, *options, *operands],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        timeout=timeout_s,
        check=False,
        env={**os.environ, "TCP_NODELAY": "1", **(env or {})},
    )
    return DcmtkResult(completed.returncode, completed.stdout, parse_rejection(completed.stdout))
