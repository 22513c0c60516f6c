"""One channel for what the package tells a user: the ``metalr_hf`` loggers (``logging.getLogger(__name__)`` in
each module, children of ``metalr_hf``), as transformers does for its own.

A warning is logged once, on the main process; the other ranks log it at INFO, shown where ``log_level_replica``
asks for it. In a Trainer run the ``metalr_hf`` logger follows ``--log_level`` / ``--log_level_replica`` when
they are set (``callback._follow_log_level``, when training begins); ``passive`` leaves it as it is.
"""

from __future__ import annotations

import logging

__all__ = ["is_main_process", "package_logger", "warn"]


def package_logger() -> logging.Logger:
    return logging.getLogger("metalr_hf")


def is_main_process() -> bool:
    """Rank 0 of ``torch.distributed``, or the only process."""
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def warn(logger: logging.Logger, message: str) -> None:
    """``message`` at WARNING on the main process, at INFO on the others (every rank says the same)."""
    if is_main_process():
        logger.warning(message)
    else:
        logger.info(message)
