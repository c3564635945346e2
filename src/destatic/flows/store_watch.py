"""One scan of an inbox on object storage (``paths.inbox = "s3://..."``), run by the ``watch-inbox`` flow.

Each object claimed (:mod:`destatic.store`) is streamed into a staging
folder of its own under the work folder, where it becomes an ordinary local
claim cleaned by the same ``denoise-file`` run as a folder's file; its
outcome is then carried back to the store (:func:`destatic.store.settle`).
"""

from __future__ import annotations

import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import get_run_logger

from destatic import inbox, store
from destatic.errors import DestaticError, display_path
from destatic.settings import Settings

__all__ = ["ProcessClaim", "SayOutcome", "scan_store"]

ProcessClaim = Callable[..., dict[str, Any]]
"""How the watcher cleans one local claim: ``process(claim, settings, announce=False)`` -> its table row."""
SayOutcome = Callable[[dict[str, Any]], None]
"""How the watcher prints one row's line on the console."""


def _clean_one(
    bucket: store.Store, taken: store.RemoteClaim, settings: Settings, process_claim: ProcessClaim, say_outcome: SayOutcome
) -> dict[str, Any]:
    """Fetch, clean and settle one claimed object; should the store fail meanwhile, the claim is dropped and the object left."""
    staging = None
    try:
        staging = store.stage(bucket, taken, settings)
        local = inbox.claim(staging.folder / "inbox", Path(taken.item.relative))
        if local is None:
            raise DestaticError(f"{display_path(taken.item.relative)} vanished from its staging folder {staging.folder}")
        row = process_claim(local, staging.settings, announce=False)
        row.update(store.settle(bucket, staging, settings, cleaned=row["status"] == "done", reason=row["reason"]))
    except Exception:
        store.release(bucket, taken)
        raise
    finally:
        if staging is not None:
            staging.discard()
    say_outcome(row)
    return row


def scan_store(settings: Settings, process_claim: ProcessClaim, say_outcome: SayOutcome) -> list[dict[str, Any]]:
    """Claim the ready objects of an inbox on object storage one by one, each just before it is cleaned and settled
    (``watch.concurrency`` at once), so that the watchers of several machines share a batch.

    Returns
    -------
    list of dict
        One row per object taken, as :func:`destatic.flows.watch.watch_inbox` returns them
        (with ``quarantined``: where a bad one went).
    """
    logger = get_run_logger()
    if settings.watch.dispatch == "deployment":
        raise DestaticError("watch.dispatch='deployment' needs a local inbox; with an s3:// inbox run a watcher on each machine (dispatch inline)")
    bucket = store.open_store(str(settings.paths.inbox), settings)
    store.check_access(bucket)
    for name in store.release_stale_claims(bucket):
        logger.warning("put back %s, claimed by a process that is gone", name)
    for path in inbox.remove_dead_partials(Path(settings.paths.work).absolute() / store.STAGING):
        logger.warning("deleted %s, left half-written by a process that is gone", path)
    ready, waiting = store.find_ready(bucket, settings)
    if waiting:
        logger.info("%d file(s) left alone until watch.retry_after_s has passed since they failed", len(waiting))
    logger.info("%d file(s) ready in %s", len(ready), settings.paths.inbox)
    pending, lock = iter(ready), threading.Lock()

    def take_and_clean() -> list[dict[str, Any]]:
        rows = []
        while True:
            with lock:
                item = next(pending, None)
            if item is None:
                return rows
            taken = store.claim(bucket, item)
            if taken is not None:
                say_outcome({"file": taken.item.relative, "status": "taken"})
                rows.append(_clean_one(bucket, taken, settings, process_claim, say_outcome))

    if settings.watch.concurrency == 1 or len(ready) <= 1:
        return take_and_clean()
    with ThreadPoolExecutor(settings.watch.concurrency) as pool:
        futures = [pool.submit(contextvars.copy_context().run, take_and_clean) for _ in range(settings.watch.concurrency)]
        return [row for future in futures for row in future.result()]
