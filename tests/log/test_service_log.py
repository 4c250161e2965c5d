"""The service log: JSON lines in <server>/logs/service.log, only when enabled, rotated daily."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from twisted.logger import Logger, LogPublisher
from twisted.python.logfile import DailyLogFile

from pacsref.log import SERVICE_LOG_NAME, ServiceLog, ServiceLogService, event_as_json_line
from pacsref.testing.harness import ServerHarness
from pacsref.ul import codec
from pacsref.ul.events import PresentationContextProposal
from tests.server.helpers import IMPLICIT, VERIFICATION, associate_rq, echo_rq

CHATTY_SYNTAX = "1.2.826.0.1.3680043.9.7.3"

CHATTY = f'''
from zope.interface import implementer
from pacsref.addin import IAddin, IEchoHandler, SupportedContext, nonblocking

@implementer(IAddin, IEchoHandler)
class Chatty:
    name = "chatty"
    description = "logs through request.log, then fails"
    def presentation_contexts(self):
        return (SupportedContext("{CHATTY_SYNTAX}", ("1.2.840.10008.1.2",)),)
    @nonblocking
    def handle_echo(self, request):
        request.log.info("checking {{who}}", who=request.calling_ae)
        raise RuntimeError("chatty broke")

chatty = Chatty()
'''


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _harness(tmp_path: Path, enabled: bool) -> ServerHarness:
    return ServerHarness(
        tmp_path / "PACSREF",
        settings={"enable_service_log": enabled, "artim_timeout": 10.0},
        extra_addins={"chatty.py": CHATTY},
    )


def _activity(harness: ServerHarness) -> None:
    """Accept, echo, add-in log line and failure, release, close; then one refusal."""
    conn = harness.connect()
    conn.send(
        associate_rq(
            calling="CT1",
            contexts=(
                PresentationContextProposal(1, VERIFICATION, (IMPLICIT,)),
                PresentationContextProposal(3, CHATTY_SYNTAX, (IMPLICIT,)),
            ),
        )
    )
    conn.send(echo_rq(message_id=7))
    conn.send(echo_rq(message_id=8, context_id=3, e0002=CHATTY_SYNTAX))
    conn.send(codec.RELEASE_RQ)
    conn.lose()
    refused = harness.connect(port=40001)
    refused.send(associate_rq(called="NOTME"))
    aborted = harness.connect(port=40002)
    aborted.send(associate_rq(calling="CT2"))
    aborted.send(codec.encode_abort(0, 0))


def test_service_log_records_structured_events(tmp_path: Path) -> None:
    """With Enable Service Log on, connections, associations (accepted with contexts,
    released, aborted), refusals with reasons, DIMSE actions, add-in lines and add-in
    failures are written as one parseable JSON object per line with their fields."""
    harness = _harness(tmp_path, enabled=True)
    service_log = harness.server.service_log
    assert service_log is not None
    service_log.start()
    try:
        _activity(harness)
    finally:
        service_log.stop()
    records = _records(tmp_path / "PACSREF" / "logs" / SERVICE_LOG_NAME)
    assert all(r["namespace"].startswith("pacsref") for r in records)
    assert all({"time", "level", "namespace", "text"} <= r.keys() for r in records)
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_kind.setdefault(record.get("kind", ""), []).append(record)

    assert by_kind["connection"][0]["host"] == "127.0.0.1"
    accepted = by_kind["association.accepted"][0]
    assert accepted["calling"] == "CT1" and accepted["called"] == "PACSREF"
    assert [c["abstract_syntax"] for c in accepted["contexts"]] == [VERIFICATION, CHATTY_SYNTAX]
    assert accepted["contexts"][0]["transfer_syntax"] == IMPLICIT

    echo, failed = by_kind["dimse"]
    assert (echo["command"], echo["message_id"], echo["status"], echo["calling"]) == (
        "C-ECHO-RQ",
        7,
        0,
        "CT1",
    )
    assert isinstance(echo["ms"], float) and echo["ms"] >= 0
    assert failed["status"] == 0x0110 and failed["status_hex"] == "0x0110"

    [addin_line] = [r for r in records if r["namespace"] == "pacsref.addin.chatty"]
    assert addin_line["text"] == "checking CT1" and addin_line["who"] == "CT1"
    [failure] = by_kind["addin.failure"]
    assert failure["addin"] == "chatty" and "chatty broke" in failure["failure"]

    assert by_kind["association.released"][0]["calling"] == "CT1"
    refused = by_kind["association.refused"][0]
    assert (refused["result"], refused["source"], refused["reason"]) == (1, 1, 7)
    assert refused["rule"] == "called-ae-title" and "NOTME" in refused["why"]
    assert refused["called"] == "NOTME" and refused["host"] == "127.0.0.1"
    aborted = by_kind["association.aborted"][0]
    assert aborted["calling"] == "CT2" and aborted["by"] == "the peer"
    assert by_kind["connection.closed"][0]["why"] == "released"


def test_nothing_written_when_disabled(tmp_path: Path) -> None:
    """Enable Service Log off (the default): no service log object, no file, whatever happens."""
    harness = _harness(tmp_path, enabled=False)
    assert harness.server.service_log is None
    _activity(harness)
    assert not (tmp_path / "PACSREF" / "logs" / SERVICE_LOG_NAME).exists()


def test_only_pacsref_namespaces_are_written(tmp_path: Path) -> None:
    """Events of other libraries stay out of the service log."""
    publisher = LogPublisher()
    service_log = ServiceLog(tmp_path / "logs", publisher)
    service_log.start()
    Logger(namespace="twisted.web", observer=publisher).info("not ours")
    Logger(namespace="pacsrefx", observer=publisher).info("prefix only, still pacsref*")
    Logger(namespace="pacsref.server", observer=publisher).info("ours {n}", n=1, kind="test")
    service_log.stop()
    records = _records(tmp_path / "logs" / SERVICE_LOG_NAME)
    assert [r["text"] for r in records] == ["prefix only, still pacsref*", "ours 1"]
    assert records[1]["n"] == 1 and records[1]["kind"] == "test"


def test_service_adds_and_removes_its_observer(tmp_path: Path) -> None:
    """ServiceLogService adds the observer on start and removes it on stop; the file is
    a DailyLogFile (rotated at the first write of a new day)."""
    publisher = LogPublisher()
    service_log = ServiceLog(tmp_path / "logs", publisher)
    service = ServiceLogService(service_log)
    service.startService()
    assert isinstance(service_log.file, DailyLogFile)
    assert service_log in publisher._observers
    assert service_log.actions is not None
    service.stopService()
    assert service_log not in publisher._observers
    assert service_log.file is None and service_log.actions is None
    Logger(namespace="pacsref.server", observer=publisher).info("after stop")
    assert (tmp_path / "logs" / SERVICE_LOG_NAME).read_text() == ""


def test_daily_rotation(tmp_path: Path) -> None:
    """A write on a new day moves yesterday's lines to service.log.YYYY_M_D."""
    publisher = LogPublisher()
    service_log = ServiceLog(tmp_path / "logs", publisher)
    service_log.start()
    log = Logger(namespace="pacsref.server", observer=publisher)
    log.info("yesterday")
    assert service_log.file is not None
    yesterday = time.localtime(time.time() - 86400)[:3]
    service_log.file.lastDate = yesterday
    log.info("today")
    service_log.stop()
    rotated = tmp_path / "logs" / f"{SERVICE_LOG_NAME}.{'_'.join(map(str, yesterday))}"
    assert [r["text"] for r in _records(rotated)] == ["yesterday"]
    assert [r["text"] for r in _records(tmp_path / "logs" / SERVICE_LOG_NAME)] == ["today"]


def test_line_format_is_one_json_object() -> None:
    """A line is a JSON object and a newline; odd field values are written as text."""
    line = event_as_json_line(
        {
            "log_format": "x {v}",
            "log_namespace": "pacsref.test",
            "log_time": 0.0,
            "v": {1, 2},
            "path": Path("/tmp/a"),
            "raw": b"\x01",
        }
    )
    assert line.endswith("\n") and "\n" not in line[:-1]
    record = json.loads(line)
    assert record["time"] == "1970-01-01T00:00:00+00:00"
    assert record["path"] == "/tmp/a" and record["raw"] == "01"
