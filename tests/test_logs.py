"""Logging set-up: both formats, levels, stdlib routing, and redaction of credentials."""

from __future__ import annotations

import io
import json
import logging
import secrets
from collections.abc import Iterator
from datetime import datetime

import pytest
import structlog

from radius_bridge import logs
from radius_bridge.config import LogFormat
from radius_bridge.model import Secret

log = structlog.get_logger("radius_bridge.test_logs")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Every test leaves structlog and the standard library's logging as it found them."""
    yield
    logs.reset_logging()
    structlog.contextvars.clear_contextvars()


@pytest.fixture
def out() -> io.StringIO:
    """A stream to log into."""
    return io.StringIO()


def json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def unique_secret() -> str:
    return "sec-" + secrets.token_hex(8)


def test_json_is_one_object_per_line_with_timestamp_level_event(out: io.StringIO) -> None:
    """JSON format writes one object per event with an ISO UTC timestamp, level, event, logger."""
    logs.configure_logging(LogFormat.JSON, "info", stream=out)
    log.info("radius.request.completed", outcome="accept", duration_ms=12.5)
    log.warning("bridge.reload.refused", error="bad key")
    first, second = json_lines(out)
    assert first["event"] == "radius.request.completed"
    assert (first["level"], first["outcome"], first["duration_ms"]) == ("info", "accept", 12.5)
    assert first["logger"] == "radius_bridge.test_logs"
    assert datetime.fromisoformat(str(first["timestamp"])).utcoffset() is not None
    assert (second["level"], second["event"]) == ("warning", "bridge.reload.refused")


def test_console_is_readable_key_value_lines(out: io.StringIO) -> None:
    """Console format writes the event, level and key=value pairs, uncoloured off a terminal."""
    logs.configure_logging(LogFormat.CONSOLE, "info", stream=out)
    log.info("bridge.started", clients=3)
    line = out.getvalue()
    assert line.count("\n") == 1
    assert "bridge.started" in line and "clients=3" in line and "info" in line
    assert "\x1b[" not in line and not line.startswith("{")


def test_context_variables_are_merged(out: io.StringIO) -> None:
    """Fields bound with structlog.contextvars appear on every line of that context."""
    logs.configure_logging(LogFormat.JSON, "info", stream=out)
    structlog.contextvars.bind_contextvars(request_id="r-1", client="vpn1")
    log.info("fic.call")
    logging.getLogger("urllib3.connectionpool").warning("retrying")
    for line in json_lines(out):
        assert (line["request_id"], line["client"]) == ("r-1", "vpn1")


def test_level_filters_and_set_level_reaches_loggers_bound_before(out: io.StringIO) -> None:
    """Below the level nothing is written; set_level changes that for loggers bound earlier."""
    logs.configure_logging(LogFormat.JSON, "info", stream=out)
    bound = log.bind(component="poller")
    bound.debug("poll.tick")
    logging.getLogger("radius_bridge.other").debug("stdlib debug")
    assert out.getvalue() == ""
    logs.set_level("DEBUG")
    bound.debug("poll.tick")
    logging.getLogger("radius_bridge.other").debug("stdlib debug")
    assert [line["event"] for line in json_lines(out)] == ["poll.tick", "stdlib debug"]
    logs.set_level("error")
    bound.warning("push.slow")
    logging.getLogger("radius_bridge.other").warning("stdlib warning")
    bound.error("push.failed")
    assert [line["event"] for line in json_lines(out)][-1] == "push.failed"
    assert len(json_lines(out)) == 3


@pytest.mark.parametrize("level", ["verbose", "", "10"])
def test_unknown_level_is_refused(level: str) -> None:
    """A level name outside debug/info/warning/error/critical raises ValueError."""
    with pytest.raises(ValueError, match="unknown log level"):
        logs.set_level(level)


@pytest.mark.parametrize("level", ["debug", "info", "warning", "error"])
def test_pyrad_never_logs_below_warning(out: io.StringIO, level: str) -> None:
    """pyrad's debug and info lines (raw packets) never appear, at any level of ours."""
    logs.configure_logging(LogFormat.JSON, level, stream=out)
    pyrad = logging.getLogger("pyrad.server")
    pyrad.debug("packet hex 0102deadbeef")
    pyrad.info("Received an authentication request")
    logs.set_level(level)
    pyrad.debug("packet hex 0102deadbeef")
    pyrad.warning("Dropping packet from unknown host")
    pyrad.error("Error on decode packet")
    events = [line["event"] for line in json_lines(out)]
    assert "packet hex 0102deadbeef" not in events
    assert "Received an authentication request" not in events
    expected = ["Error on decode packet"]
    if level != "error":
        expected.insert(0, "Dropping packet from unknown host")
    assert events == expected


def test_stdlib_records_share_stream_and_format(out: io.StringIO) -> None:
    """Standard-library records come out as the same JSON lines, with their logger name."""
    logs.configure_logging(LogFormat.JSON, "info", stream=out)
    logging.getLogger("urllib3.connectionpool").warning("Retrying %s", "POST /api/v1/auth")
    (line,) = json_lines(out)
    assert line["event"] == "Retrying POST /api/v1/auth"
    assert (line["logger"], line["level"]) == ("urllib3.connectionpool", "warning")


def test_configuring_again_does_not_duplicate_lines(out: io.StringIO) -> None:
    """Calling configure_logging twice leaves one handler: each stdlib record is written once."""
    first = io.StringIO()
    logs.configure_logging(LogFormat.JSON, "info", stream=first)
    logs.configure_logging(LogFormat.JSON, "info", stream=out)
    logging.getLogger("x").warning("once")
    log.info("native once")
    assert first.getvalue() == ""
    assert [line["event"] for line in json_lines(out)] == ["once", "native once"]


@pytest.mark.parametrize(
    ("key", "sensitive"),
    [
        ("password", True),
        ("User-Password", True),
        ("passwd", True),
        ("client_secret", True),
        ("state_secret", True),
        ("secrets", True),
        ("token", True),
        ("access_token", True),
        ("accessToken", True),
        ("Authorization", True),
        ("otp", True),
        ("code", True),
        ("otp_code", True),
        ("codes", True),
        ("cookie", True),
        ("status_code", False),
        ("exit_code", False),
        ("http_status_code", False),
        ("reason", False),
        ("user", False),
        ("fic_auth_id", False),
        ("factor", False),
        ("key", False),
        ("duration_ms", False),
        ("encoder", False),
    ],
)
def test_sensitive_key_names(key: str, sensitive: bool) -> None:
    """Keys named like a credential are sensitive; protocol codes and ordinary fields are not."""
    assert logs.is_sensitive_key(key) is sensitive


@pytest.mark.parametrize("fmt", list(LogFormat))
def test_credential_keys_are_redacted_at_any_depth(out: io.StringIO, fmt: LogFormat) -> None:
    """Values under credential-named keys are replaced, also inside nested mappings and lists."""
    logs.configure_logging(fmt, "info", stream=out)
    log.info(
        "fic.login",
        password="hunter2-pw",
        body={"client_id": "app-1", "client_secret": "cs-value-9"},
        headers=[{"Authorization": "Bearer tok-value-8"}],
        otp="246810",
        status_code=201,
    )
    text = out.getvalue()
    for value in ("hunter2-pw", "cs-value-9", "tok-value-8", "246810"):
        assert value not in text
    assert text.count(logs.REDACTED) == 4
    assert "app-1" in text and "201" in text


@pytest.mark.parametrize("fmt", list(LogFormat))
def test_registered_secrets_are_redacted_in_any_string(out: io.StringIO, fmt: LogFormat) -> None:
    """A registered value is blanked in the message, values, nested data, bytes and reprs."""
    early, late = unique_secret(), unique_secret()
    logs.configure_logging(fmt, "info", stream=out, secrets=[early])
    logs.register_secret(Secret(late))

    class Holder:
        def __repr__(self) -> str:
            return f"Holder({late})"

    log.info(
        f"event with {early}",
        detail=f"x{early}y",
        nested={"list": [late, ("a", early)]},
        raw=late.encode(),
        obj=Holder(),
    )
    logging.getLogger("urllib3").warning("url https://u:%s@proxy", late)
    text = out.getvalue()
    assert early not in text and late not in text
    assert text.count(logs.REDACTED) >= 7


def test_secret_with_quotes_and_backslashes_is_redacted_in_json(out: io.StringIO) -> None:
    """A secret that JSON or repr() would escape is still blanked in the rendered line."""
    tricky = 'q"uo\\te-' + secrets.token_hex(4)
    logs.configure_logging(LogFormat.JSON, "info", stream=out, secrets=[tricky])

    class Holder:
        def __repr__(self) -> str:
            return repr({"value": tricky})

    log.info("tricky", value=tricky, obj=Holder())
    text = out.getvalue()
    assert tricky not in text
    assert json.dumps(tricky)[1:-1] not in text and repr(tricky)[1:-1] not in text
    assert json_lines(out)[0]["value"] == logs.REDACTED


@pytest.mark.parametrize("fmt", list(LogFormat))
def test_non_ascii_secret_is_redacted_in_escaped_forms(out: io.StringIO, fmt: LogFormat) -> None:
    """A secret with non-ASCII letters is blanked as text, as JSON \\u escapes and in bytes."""
    secret = "pässwörd-" + secrets.token_hex(4)
    logs.configure_logging(fmt, "info", stream=out, secrets=[secret])
    log.info("escaped", value=secret, raw=secret.encode(), items=(secret,))
    text = out.getvalue()
    for form in (secret, json.dumps(secret)[1:-1], repr(secret.encode())[2:-1]):
        assert form not in text
    assert text.count(logs.REDACTED) == 3


def test_secret_in_an_objects_own_rendering_is_redacted(out: io.StringIO) -> None:
    """An object that renders itself (__structlog__) cannot smuggle a secret past the redactor."""
    tricky = 'q"uo\\te-' + secrets.token_hex(4)
    logs.configure_logging(LogFormat.JSON, "info", stream=out, secrets=[tricky])

    class SelfRendering:
        def __structlog__(self) -> str:
            return f"rendered {tricky}"

    log.info("self.rendering", obj=SelfRendering())
    assert json_lines(out)[0]["obj"] == "rendered [redacted]"


@pytest.mark.parametrize("fmt", list(LogFormat))
@pytest.mark.parametrize("source", ["structlog", "stdlib"])
def test_registered_secrets_are_redacted_in_tracebacks(
    out: io.StringIO, fmt: LogFormat, source: str
) -> None:
    """An exception message carrying a secret is blanked in the formatted traceback."""
    secret = unique_secret()
    logs.configure_logging(fmt, "info", stream=out, secrets=[secret])
    try:
        raise RuntimeError(f"login failed with {secret}")
    except RuntimeError:
        if source == "structlog":
            log.exception("fic.login.failed")
        else:
            logging.getLogger("requests").exception("fic.login.failed")
    text = out.getvalue()
    assert "Traceback (most recent call last)" in text.replace("\\n", "\n")
    assert "RuntimeError: login failed with [redacted]" in text
    assert secret not in text


@pytest.mark.parametrize("fmt", list(LogFormat))
def test_tracebacks_do_not_show_local_variables(out: io.StringIO, fmt: LogFormat) -> None:
    """A password held in a local variable never reaches the traceback in the log."""
    logs.configure_logging(fmt, "info", stream=out)

    def check(password: str) -> None:
        raise ValueError("bad")

    local_password = secrets.token_hex(8)
    try:
        check(local_password)
    except ValueError:
        log.exception("check.failed")
    assert local_password not in out.getvalue()
    assert "ValueError: bad" in out.getvalue()


def test_a_secret_containing_another_is_blanked_whole(out: io.StringIO) -> None:
    """When one secret starts with another, the longer one is blanked entirely."""
    short, tail = unique_secret(), secrets.token_hex(8)
    logs.configure_logging(LogFormat.JSON, "info", stream=out, secrets=[short, f"{short}{tail}"])
    log.info("nested.secrets", value=f"{short}{tail}")
    assert tail not in out.getvalue()
    assert json_lines(out)[0]["value"] == logs.REDACTED


class FlushCountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushes_after_line: list[bool] = []

    def flush(self) -> None:
        self.flushes_after_line.append(self.getvalue().endswith("\n"))
        super().flush()


def test_every_line_is_flushed_when_written() -> None:
    """Each line is flushed at once, so journald sees events as they happen."""
    stream = FlushCountingStream()
    logs.configure_logging(LogFormat.JSON, "info", stream=stream)
    log.info("one")
    logging.getLogger("x").warning("two")
    assert stream.getvalue().count("\n") == 2
    assert stream.flushes_after_line == [True, True]


def test_reset_puts_logging_back_as_it_was() -> None:
    """reset_logging removes our handler and restores the levels found before configuring."""
    root, pyrad = logging.getLogger(), logging.getLogger("pyrad")
    handlers, root_level, pyrad_level = list(root.handlers), root.level, pyrad.level
    logs.configure_logging(LogFormat.JSON, "debug", stream=io.StringIO())
    logs.configure_logging(LogFormat.CONSOLE, "error", stream=io.StringIO())
    assert (root.level, pyrad.level) == (logging.ERROR, logging.ERROR)
    logs.reset_logging()
    assert (list(root.handlers), root.level, pyrad.level) == (handlers, root_level, pyrad_level)
