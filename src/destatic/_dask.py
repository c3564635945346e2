"""The Dask task runner, in its own module so that prefect-dask loads only when it is used."""

from __future__ import annotations

import contextlib
from typing import Any

from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED, temporary_settings
from prefect_dask import DaskTaskRunner

from destatic.errors import DestaticError

__all__ = ["SharedApiDaskTaskRunner", "current_api_url"]


def current_api_url() -> str:
    """The Prefect API URL the current process talks to, starting the embedded server if needed.

    Returns ``PREFECT_API_URL`` when it is set. Otherwise the flow runs on
    Prefect's temporary local server: it is started (once per process, as
    Prefect itself does on a flow's first API call) and its URL returned.

    Returns
    -------
    str
        e.g. ``"http://127.0.0.1:4200/api"``.
    """
    configured = PREFECT_API_URL.value()
    if configured:
        return str(configured)
    if not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        raise DestaticError("PREFECT_API_URL is not set and the temporary server is disabled: set PREFECT_API_URL")
    from destatic import server

    return server.start_temporary()


class SharedApiDaskTaskRunner(DaskTaskRunner):
    """A ``DaskTaskRunner`` whose workers report to the flow's Prefect API.

    A worker without ``PREFECT_API_URL`` would start a temporary server of
    its own and leave it running after the cluster is gone. On entry this
    runner resolves the flow's API URL, puts it in the settings that Prefect
    ships with every task (so remote workers use it) and, for a local
    cluster, in each worker process's environment.
    """

    def __enter__(self) -> SharedApiDaskTaskRunner:
        api_url = current_api_url()
        if self.address is None:
            self.cluster_kwargs["env"] = {**(self.cluster_kwargs.get("env") or {}), "PREFECT_API_URL": api_url}
        self._shared_api = contextlib.ExitStack()
        super().__enter__()
        if PREFECT_API_URL.value() != api_url:
            self._shared_api.enter_context(temporary_settings(updates={PREFECT_API_URL: api_url}))
        return self

    def __exit__(self, *exc_info: Any) -> None:
        try:
            super().__exit__(*exc_info)
        finally:
            self._shared_api.close()
