"""How the flows log a failure: the one-line reason of a destatic error, not Prefect's traceback."""

from __future__ import annotations

import logging

from destatic.errors import DestaticError

__all__ = ["quiet_destatic_tracebacks"]


class _ReasonWithoutTraceback(logging.Filter):
    """Drop the traceback Prefect logs with a flow run that raised a destatic error.

    Those errors are raised on purpose and their one-line message says what
    is wrong (a bad input, a refused setting, a failure retried in vain); the
    traceback only buries it. Anything else keeps its traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], DestaticError):
            record.exc_info = None
            record.exc_text = None
        return True


def quiet_destatic_tracebacks() -> None:
    """Filter Prefect's flow-run logger so (once per process): called as a flow starts, never on import."""
    logger = logging.getLogger("prefect.flow_runs")
    if not any(isinstance(existing, _ReasonWithoutTraceback) for existing in logger.filters):
        logger.addFilter(_ReasonWithoutTraceback())
