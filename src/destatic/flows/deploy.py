"""Deployments on a work pool: the per-file flow, and the scheduled watcher that hands files to it."""

from __future__ import annotations

import contextlib
import io

from destatic.errors import DestaticError
from destatic.flows.denoise import denoise_file
from destatic.flows.watch import watcher_deployment
from destatic.settings import Settings

__all__ = ["deploy_to_pool"]


def deploy_to_pool(settings: Settings, *, pool: str, name: str = "destatic") -> dict[str, str]:
    """Deploy the per-file flow and the scheduled watcher to a work pool, the watcher dispatching to the other.

    Creates (or updates) ``denoise-file/<name>`` and ``watch-inbox/<name>-watch``
    on the server at ``PREFECT_API_URL``. Both load the flows from the
    installed ``destatic`` package, so every worker needs destatic installed,
    and the folders of `settings` on the same mount.

    Parameters
    ----------
    settings : Settings
        The watcher's settings; its ``watch.dispatch`` and ``watch.deployment``
        are set here to hand files to ``denoise-file/<name>``.
    pool : str
        An existing work pool (``prefect work-pool create POOL --type process``).
    name : str
        Name of the per-file deployment.

    Returns
    -------
    dict
        Deployment name (``FLOW/DEPLOYMENT``) to its id.

    Raises
    ------
    DestaticError
        No ``PREFECT_API_URL``, or the pool does not exist.
    """
    from prefect import deploy, get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL
    from prefect.types.entrypoint import EntrypointType

    if not PREFECT_API_URL.value():
        raise DestaticError("deploying needs a Prefect server: set PREFECT_API_URL")
    try:
        with get_client(sync_client=True) as client:
            client.read_work_pool(pool)
    except ObjectNotFound:
        raise DestaticError(f"work pool {pool!r} does not exist: prefect work-pool create {pool} --type process") from None
    per_file = f"denoise-file/{name}"
    watch = settings.watch.model_copy(update={"dispatch": "deployment", "deployment": per_file})
    dispatching = settings.model_copy(update={"watch": watch})
    deployments = [
        denoise_file.to_deployment(name=name, entrypoint_type=EntrypointType.MODULE_PATH),
        watcher_deployment(dispatching, name=f"{name}-watch", module_entrypoint=True),
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        ids = deploy(*deployments, work_pool_name=pool, build=False, push=False, print_next_steps_message=False, ignore_warnings=True)
    return dict(zip((per_file, f"watch-inbox/{name}-watch"), (str(deployment_id) for deployment_id in ids)))
