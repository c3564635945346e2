"""The Dask task runner, in its own module so that prefect-dask loads only when it is used."""

from __future__ import annotations

from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect_dask import DaskTaskRunner

from destatic.runners import current_api_url

__all__ = ["SharedApiDaskTaskRunner"]


class SharedApiDaskTaskRunner(DaskTaskRunner):
    """A ``DaskTaskRunner`` whose workers report to the flow's Prefect API.

    On entry it resolves the flow's API URL, puts it in the settings that
    Prefect ships with every task (so remote workers use it) and, for a
    local cluster, in each worker process's environment.
    """

    def __enter__(self) -> SharedApiDaskTaskRunner:
        api_url = current_api_url()
        if self.address is None and self._cluster is None:
            worker_env = dict(self.cluster_kwargs.get("env") or {})
            worker_env["PREFECT_API_URL"] = api_url
            self.cluster_kwargs["env"] = worker_env
        super().__enter__()
        if PREFECT_API_URL.value() != api_url:
            self._exit_stack.enter_context(temporary_settings(updates={PREFECT_API_URL: api_url}))
        return self
