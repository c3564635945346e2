"""What counts as the Prefect API's outage (never a file's failure), and what destatic does about a server it does not own."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from destatic import outage, server
from destatic.errors import BadInputError, TransientError


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def answering() -> Iterator[str]:
    """A local HTTP server whose /status/NNN answers with that status."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(int(self.path.split("/status/")[1].split("/")[0]))
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _raised(url: str) -> Exception:
    try:
        httpx.get(url, timeout=5).raise_for_status()
    except Exception as error:
        return error
    raise AssertionError(f"{url} did not fail")


def test_a_refused_connection_and_a_5xx_are_outages_a_4xx_and_the_file_s_errors_are_not(answering: str) -> None:
    assert outage.api_unreachable(_raised(f"http://127.0.0.1:{_closed_port()}/api/health"))
    assert outage.api_unreachable(_raised(f"{answering}/status/503"))
    assert outage.api_unreachable(_raised(f"{answering}/status/500"))
    assert not outage.api_unreachable(_raised(f"{answering}/status/404"))
    assert not outage.api_unreachable(BadInputError("x.wav", "not media"))
    assert not outage.api_unreachable(TransientError("ffmpeg killed"))
    try:
        try:
            raise _raised(f"http://127.0.0.1:{_closed_port()}/api/logs")
        except httpx.ConnectError as error:
            raise RuntimeError("while reporting a state") from error
    except RuntimeError as wrapped:
        assert outage.api_unreachable(wrapped), "an outage raised from an API error is still one"


def test_best_effort_goes_on_past_an_outage_only(answering: str) -> None:
    with outage.best_effort("a report"):
        raise _raised(f"{answering}/status/503")
    with pytest.raises(TransientError), outage.best_effort("a report"):
        raise TransientError("disk full")


def test_a_server_destatic_does_not_own_is_waited_for_never_started(answering: str) -> None:
    gone = f"http://127.0.0.1:{_closed_port()}/api"
    assert not server.owns(gone)
    assert not server.revive(gone), "a server named by PREFECT_API_URL is not started by destatic"
    assert not server.api_answers(gone)
    assert outage.wait_for_api(None) == 0.0, "Prefect's temporary server lives in this process: nothing to wait for"
    said: list[str] = []
    assert outage.wait_for_api(f"{answering}/status/200", say=said.append) == 0.0 and said == []
