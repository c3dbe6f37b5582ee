"""Errors of the attention kernels."""

from __future__ import annotations


class BackendUnavailableError(ValueError):
    """The requested attention backend cannot run here (a package is missing or the device is wrong)."""
