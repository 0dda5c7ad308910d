"""Logging set-up: structlog to stdout, JSON lines or a console layout, with redaction last.

Following structlog's advice for daemons under systemd: one event per line on stdout (journald
stores it), JSON for machines or a readable layout for a terminal, per-request context from
``structlog.contextvars``, exceptions rendered as plain tracebacks (never with local variables,
which could hold a password). Records of the standard library's ``logging`` (pyrad, urllib3)
go through the same processors to the same stream; the ``pyrad`` logger stays at WARNING or
above, because its debug lines dump raw packets. Before rendering, the value of every key
named like a credential becomes ``[redacted]``; after rendering, the last processor blanks every
registered secret value wherever it appears in the line, tracebacks included.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import sys
import threading
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from radius_bridge.config import LogFormat
from radius_bridge.model import Secret

REDACTED = "[redacted]"

# Loggers of libraries that must stay quiet below WARNING whatever our level: pyrad's debug
# output includes the packet hex, and with it the hidden User-Password (RFC 2865 §5.2).
QUIET_LIBRARY_LOGGERS = ("pyrad",)

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR, "critical": logging.CRITICAL}  # fmt: skip
# structlog calls the wrapped logger's method by level name; aliases included.
_METHOD_LEVELS = {
    **_LEVELS,
    "warn": logging.WARNING,
    "exception": logging.ERROR,
    "fatal": logging.CRITICAL,
}

# Words that make a key's value a credential: ``password``, ``client_secret``, ``accessToken``,
# ``Authorization``, ``otp``, ``code``. A "code" right after one of the harmless qualifiers is
# a number about a protocol, not a one-time code (``status_code``, ``exit_code``).
_SENSITIVE_WORDS = frozenset(
    {
        "password", "passwd", "pwd", "passcode", "secret", "token", "otp", "authorization",
        "credential", "cookie", "code",
    }
)  # fmt: skip
_HARMLESS_CODE_QUALIFIERS = frozenset(
    {"status", "exit", "error", "http", "response", "return", "reply", "packet", "radius",
     "country", "reason", "result"}
)  # fmt: skip
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")


@functools.lru_cache(maxsize=4096)  # the same few dozen keys, on every log line
def is_sensitive_key(key: str) -> bool:
    """Whether a field called ``key`` holds a credential and must not be logged."""
    words = [w for w in _NON_ALNUM.split(_CAMEL_BOUNDARY.sub("_", key).lower()) if w]
    for index, word in enumerate(words):
        singular = word[:-1] if word.endswith("s") else word
        if singular == "code":
            if index == 0 or words[index - 1] not in _HARMLESS_CODE_QUALIFIERS:
                return True
        elif word in _SENSITIVE_WORDS or singular in _SENSITIVE_WORDS:
            return True
    return False


class _SecretValues:
    """The secret values to blank out of every string; grows at runtime (reloads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Replaced, never mutated, so readers need no lock.
        self._values: frozenset[str] = frozenset()
        self._pattern: re.Pattern[str] | None = None

    def add(self, value: str | Secret) -> None:
        text = value.reveal() if isinstance(value, Secret) else value
        if not text:
            return
        # Also the forms the value takes once escaped by repr() or JSON, so that a secret with
        # a quote, a backslash or a non-ASCII letter is still found in the rendered line.
        shown = {text, repr(text)[1:-1], repr(text.encode())[2:-1]}
        forms = shown | {
            json.dumps(form, ensure_ascii=ascii_only)[1:-1]
            for form in shown
            for ascii_only in (True, False)
        }
        with self._lock:
            if forms <= self._values:
                return
            values = self._values | forms
            # Longest first, so a secret containing another is blanked whole.
            alternatives = sorted(values, key=len, reverse=True)
            self._pattern = re.compile("|".join(map(re.escape, alternatives)))
            self._values = values

    def redact(self, text: str) -> str:
        pattern = self._pattern
        return text if pattern is None else pattern.sub(REDACTED, text)


_secrets = _SecretValues()


def register_secret(value: str | Secret) -> None:
    """Blank ``value`` out of every log line from now on (client secrets after a reload)."""
    _secrets.add(value)


def _redact_keys(value: object) -> object:
    if isinstance(value, Mapping):
        return {
            key: REDACTED if isinstance(key, str) and is_sensitive_key(key) else _redact_keys(v)
            for key, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact_keys(item) for item in value]
    return value


def redact_keys(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Processor: blank the values of credential-named keys, at any depth of dicts and lists."""
    return {
        key: REDACTED if is_sensitive_key(key) else _redact_keys(value)
        for key, value in event_dict.items()
    }


def redact_secrets(_: WrappedLogger, __: str, rendered: Any) -> str:
    """The last processor: blank every registered secret in the rendered line.

    Working on the final text catches a secret wherever it ended up: the message, a value, a
    nested structure, an object's repr, a traceback, in the escaped forms the renderer wrote.
    """
    # Typed Any: structlog hands the renderer's output (a str) to the processor after it.
    return _secrets.redact(str(rendered))


class _Threshold:
    """The current level, read by the first processor so that ``set_level`` reaches every
    logger, also those bound before the change."""

    level = logging.INFO


_threshold = _Threshold()


def _add_logger_name(logger: WrappedLogger, _: str, event_dict: EventDict) -> EventDict:
    # structlog.get_logger("radius_bridge.service") hands the name to our logger factory.
    name = getattr(logger, "name", None)
    if name:
        event_dict["logger"] = name
    return event_dict


def _drop_below_level(_: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    if _METHOD_LEVELS.get(method_name, logging.CRITICAL) < _threshold.level:
        raise structlog.DropEvent
    return event_dict


class _LineWriter:
    """Writes whole lines to one stream under one lock, for structlog and logging alike."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._lock = threading.Lock()

    def write_line(self, line: str) -> None:
        with self._lock:
            self.stream.write(line + "\n")
            # journald should see each line when it happens, not when a buffer fills.
            self.stream.flush()


class _LineLogger:
    """The logger structlog wraps: takes the rendered line, whatever the level."""

    def __init__(self, writer: _LineWriter, name: str | None) -> None:
        self._writer = writer
        self.name = name

    def msg(self, message: str) -> None:
        self._writer.write_line(message)

    debug = info = warning = warn = error = exception = critical = fatal = log = msg


class _LineHandler(logging.Handler):
    """Sends standard-library records, formatted by structlog, to the shared writer."""

    def __init__(self, writer: _LineWriter) -> None:
        super().__init__()
        self._writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._writer.write_line(self.format(record))
        except Exception:
            self.handleError(record)


_installed_handler: _LineHandler | None = None
# The standard-library levels found before the first configure_logging, for reset_logging.
_levels_before: dict[str, int] = {}


def parse_level(level: str) -> int:
    """The ``logging`` level for a name like ``"info"`` (any case); ValueError otherwise."""
    try:
        return _LEVELS[level.strip().lower()]
    except KeyError:
        raise ValueError(
            f"unknown log level {level!r} (expected one of: {', '.join(_LEVELS)})"
        ) from None


def configure_logging(
    format: LogFormat,
    level: str,
    *,
    stream: TextIO | None = None,
    secrets: Iterable[str | Secret] = (),
) -> None:
    """Send structlog and standard-library logging to ``stream`` (stdout) as ``format``.

    May be called again (tests, a changed format); ``set_level`` changes only the level.
    """
    global _installed_handler
    threshold = parse_level(level)
    for value in secrets:
        register_secret(value)
    out = sys.stdout if stream is None else stream
    writer = _LineWriter(out)

    # Tracebacks as plain text in the event (no local variables), so the redactor sees them.
    renderer: Processor
    if format is LogFormat.JSON:
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=out.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    finish: list[Processor] = [
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        redact_keys,
        renderer,
        redact_secrets,
    ]
    _threshold.level = threshold
    structlog.configure(
        processors=[_drop_below_level, *shared, _add_logger_name, *finish],
        # Level names as methods; the level itself is enforced by _drop_below_level, so that
        # set_level also reaches loggers bound before it (a level frozen into the wrapper
        # class would not change for them).
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        logger_factory=lambda *args: _LineLogger(writer, str(args[0]) if args else None),
        context_class=dict,
        # Not cached: a later configure_logging (or structlog.testing.capture_logs in tests)
        # must reach the module-level loggers too.
        cache_logger_on_first_use=False,
    )

    handler = _LineHandler(writer)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *finish],
        )
    )
    root = logging.getLogger()
    if _installed_handler is not None:
        root.removeHandler(_installed_handler)
    else:
        for name in ("", *QUIET_LIBRARY_LOGGERS):
            _levels_before[name] = logging.getLogger(name).level
    root.addHandler(handler)
    _installed_handler = handler
    _apply_stdlib_levels(threshold)


def reset_logging() -> None:
    """Undo ``configure_logging``: structlog's defaults, our handler off the root logger, and
    the standard-library levels as they were."""
    global _installed_handler
    structlog.reset_defaults()
    if _installed_handler is not None:
        logging.getLogger().removeHandler(_installed_handler)
        _installed_handler = None
    for name, level in _levels_before.items():
        logging.getLogger(name).setLevel(level)
    _levels_before.clear()


def set_level(level: str) -> None:
    """Change the level of every logger, structlog and standard library, from now on."""
    threshold = parse_level(level)
    _threshold.level = threshold
    _apply_stdlib_levels(threshold)


def _apply_stdlib_levels(threshold: int) -> None:
    logging.getLogger().setLevel(threshold)
    for name in QUIET_LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(max(threshold, logging.WARNING))
