"""Every error the project raises on purpose derives from SaleError.

Each carries a message that says where (file, field, agent, endpoint) and why,
so the command line can print it as one line instead of a traceback.
"""

from __future__ import annotations


class SaleError(Exception):
    """Base class of the project's own errors."""


class ConfigError(SaleError):
    """A pool, auction or run configuration is malformed."""


class TaskFileError(SaleError):
    """A task file (or a FORMAT:PATH task source) is malformed."""


class ModelError(SaleError):
    """A local model is missing, cannot be fetched or fails its sha256 check."""


class MissingExtraError(SaleError, ImportError):
    """An optional dependency is not installed."""

    def __init__(self, module: str, extra: str, purpose: str):
        super().__init__(
            f"{purpose} needs the '{module}' package: pip install 'sale[{extra}]'"
        )
        self.module = module
        self.extra = extra


class BudgetExceeded(SaleError):
    """A dollar budget would be exceeded by the next call."""


def require(module: str, extra: str, purpose: str):
    """Import an optional module or raise a one-line error naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingExtraError(module, extra, purpose) from exc


class DiskFullError(SaleError):
    """A write failed because the disk (or the user's quota) is full; names the path."""


class RunLockedError(SaleError):
    """Another process is running in the same run folder."""
