"""Prefect flows: clean files (:mod:`.denoise`), watch an inbox (:mod:`.watch`), deploy both (:mod:`.deploy`).

The flows only order the steps of :mod:`destatic.tasks`; the per-file graph
is :mod:`.graph`, the inbox's bookkeeping :mod:`destatic.inbox`.
"""

from destatic.flows.denoise import denoise_file, denoise_files, run_batch, run_tags
from destatic.flows.deploy import deploy_to_pool
from destatic.flows.graph import LONG_FILE_S
from destatic.flows.watch import scan_once, serve_watcher, watch_inbox, watcher_deployment

__all__ = [
    "LONG_FILE_S",
    "denoise_file",
    "denoise_files",
    "deploy_to_pool",
    "run_batch",
    "run_tags",
    "scan_once",
    "serve_watcher",
    "watch_inbox",
    "watcher_deployment",
]
