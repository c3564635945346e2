"""When the Prefect API goes away: what counts as its outage, waiting it out, bringing destatic's own server back.

An unreachable API is never a file's failure: a run that meets one leaves
its file claimed, uncounted, and the watcher runs it again once the API
answers. What Prefect 3.9 does by itself, and what is left to this module:

- Its client retries each request 5 times (``PREFECT_CLIENT_MAX_RETRIES``)
  with a backoff of 2, 4, 8, 16, 32 s (about a minute), on timeouts and
  502/503 answers (a PostgreSQL that is down gives 503), and on refused
  connections only once that client has connected before. A request in
  flight therefore rides out a server that is back within a minute at the
  same address; a longer outage raises ``httpx`` errors into the flow, and a
  new flow run cannot even be created.
- Task-run states travel as events: the events worker tries each event 11
  times over about 8 s, then drops it with an error line. Tasks carry on.
- The runner behind ``serve`` polls for scheduled runs; after 3 failed polls
  in a row (about 3 min with the retries above) it prints the tracebacks and
  stops serving.

- A run under a concurrency limit (the watcher's scan: one at a time)
  renews its lease with the server; the server keeps leases in memory by
  default, so after a restart the renewal finds none and Prefect ends the
  run. destatic's background server keeps them on disk instead
  (``PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE``, Prefect's filesystem storage).

So the watcher (:mod:`destatic.flows.watch`) waits here before each file,
with backoff, while the API does not answer; destatic's own background
server is started again on its port (:func:`destatic.server.revive`), a
server named by ``PREFECT_API_URL`` is only waited for.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import time
from collections.abc import Callable, Iterator
from typing import TextIO

from destatic import server
from destatic.errors import causes

__all__ = ["FIRST_WAIT_S", "LONGEST_WAIT_S", "answers", "api_unreachable", "best_effort", "quiet_prefect_transport_errors", "quiet_service_summaries", "runner_gave_up", "wait_for_api"]

FIRST_WAIT_S = 1.0
LONGEST_WAIT_S = 30.0
SLOW_ANSWER_S = 10.0
"""A server that takes this long to answer its health check (a busy machine) is not yet gone."""
_logger = logging.getLogger("destatic.outage")


def api_unreachable(error: BaseException) -> bool:
    """Whether `error` (or an error it was raised from) says the Prefect API could not be reached or answered 5xx.

    A refused or dropped connection, a timeout, or an answer of 500 and up
    (the server up, its database down): none of them is the file's doing.
    """
    import httpx
    from websockets.exceptions import ConnectionClosed, InvalidHandshake

    for current in causes(error):
        if isinstance(current, (httpx.TransportError, ConnectionClosed, InvalidHandshake, ConnectionRefusedError)):
            return True
        if isinstance(current, httpx.HTTPStatusError) and current.response.status_code >= 500:
            return True
    return False


def runner_gave_up(error: BaseException) -> bool:
    """Whether `error` is Prefect's runner (behind ``serve``) stopping after failed polls, or holds an unreachable API."""
    inner = getattr(error, "exceptions", ())  # an exception group from the runner's task group
    if any(runner_gave_up(each) for each in inner):
        return True
    return api_unreachable(error) or any("exceeded error threshold" in str(current) for current in causes(error))


@contextlib.contextmanager
def best_effort(what: str) -> Iterator[None]:
    """Run the block; if the Prefect API is unreachable, log that `what` was not recorded and go on.

    For what only reports (artifacts, progress, a run's last state): the
    file's outcome must not depend on the server being there.
    """
    try:
        yield
    except Exception as error:
        if not api_unreachable(error):
            raise
        _run_logger().warning("%s not recorded: the Prefect API is unreachable (%s)", what, type(error).__name__)


def _run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The flow or task run's logger (its console line), or this module's outside a run."""
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return _logger


def answers(api_url: str) -> bool:
    """Whether the Prefect API at `api_url` answers its health check, given :data:`SLOW_ANSWER_S` when it is slow."""
    return server.api_answers(api_url) or server.api_answers(api_url, timeout=SLOW_ANSWER_S)


def wait_for_api(api_url: str | None, *, say: Callable[[str], None] | None = None, waiting: Callable[[], int] | None = None) -> float:
    """Return once the Prefect API at `api_url` answers; before that, wait with backoff, reviving destatic's own server.

    Parameters
    ----------
    api_url : str or None
        The API (``PREFECT_API_URL`` as the flow sees it); None (Prefect's
        temporary server, which lives and dies with this process): return at once.
    say : callable or None
        Given one line when the API is found gone and one when it is back.
    waiting : callable or None
        The number of files waiting, for those lines.

    Returns
    -------
    float
        Seconds waited.
    """
    if not api_url or answers(api_url):
        return 0.0
    started, pause = time.monotonic(), FIRST_WAIT_S
    owned = server.owns(api_url)
    count = f"; {waiting()} file(s) waiting" if waiting is not None else ""
    if say is not None:
        how = "starting destatic's server again" if owned else "waiting for it"
        say(f"the Prefect API at {api_url} does not answer: {how}{count}")
    while not (server.revive(api_url) if owned else server.api_answers(api_url)):
        time.sleep(pause)
        pause = min(pause * 2, LONGEST_WAIT_S)
    seconds = time.monotonic() - started
    if say is not None:
        count = f"; {waiting()} file(s) waiting" if waiting is not None else ""
        say(f"the Prefect API at {api_url} answers again after {seconds:.0f} s{count}")
    return seconds


class _DropTransportErrors(logging.Filter):
    """Drop Prefect's records about an API it cannot reach (its events worker, observers, client, log shipper, runner)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("prefect"):
            return True
        if record.exc_info and record.exc_info[1] is not None:
            if runner_gave_up(record.exc_info[1]) and not api_unreachable(record.exc_info[1]):
                record.exc_info, record.exc_text = None, None  # its line says what stopped; the traceback adds nothing
                return True
            return not api_unreachable(record.exc_info[1])
        text = record.getMessage()
        return not any(sign in text for sign in _TRANSPORT_SIGNS)


_TRANSPORT_SIGNS = ("ConnectError", "Connection refused", "connect call failed", "ConnectionClosed", "Unable to connect",
                    "failed to process item", "All connection attempts failed", "Service Unavailable", "websocket failed",
                    "reconnected to the events stream")


def quiet_prefect_transport_errors() -> None:
    """Keep the console free of Prefect's connection errors and tracebacks while its API is away (once per process).

    The watcher says in one line when the API goes and in one when it is
    back (:func:`wait_for_api`); the rest is noise: an error line per event
    dropped, a traceback per lost websocket, the log shipper's
    ``--- Error logging to API ---`` (written only when
    ``logging.raiseExceptions`` is on, the stdlib's default for debugging).
    Records that carry another error pass.
    """
    logging.raiseExceptions = False
    loggers = [logging.getLogger(name) for name in list(logging.Logger.manager.loggerDict) if name.startswith("prefect")]
    handlers = {handler for logger in (logging.getLogger(), *loggers) for handler in logger.handlers}
    for handler in handlers:
        if not any(isinstance(existing, _DropTransportErrors) for existing in handler.filters):
            handler.addFilter(_DropTransportErrors())


class _WithoutServiceSummaries(io.TextIOBase):
    """Standard output without the error summaries Prefect's service loops print (not log) when they give up."""

    _SIGNS = ("\nFailed the last", "Examples of recent errors", "Traceback (most recent call last)",
              "Backing off due to consecutive errors", "Resetting backoff due to")

    def __init__(self, stream: TextIO) -> None:
        self.stream, self._dropped = stream, False

    def write(self, text: str) -> int:
        if text.startswith(self._SIGNS) or (self._dropped and text == "\n"):
            self._dropped = text != "\n"
            return len(text)
        self._dropped = False
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


@contextlib.contextmanager
def quiet_service_summaries() -> Iterator[None]:
    """In the block, keep off standard output the tracebacks Prefect's polling loops print after 3 failures in a row.

    The loops (the runner's poll for scheduled runs, its cancellation
    observer) ``print`` them instead of logging them, so no log filter can.
    """
    with contextlib.redirect_stdout(_WithoutServiceSummaries(sys.stdout)):
        yield
