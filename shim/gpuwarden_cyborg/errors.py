# SPDX-License-Identifier: Apache-2.0
"""Exceptions raised by the gpuwarden driver.

discover() raises one of these instead of returning an empty or partial
list: Cyborg's conductor treats every device missing from a report as
removed and deletes its Placement providers, which fails (and wedges every
later report) while a VM still holds one. Raising makes cyborg-agent log the
error and report nothing this cycle, so Placement keeps what it had.
"""


class GPUWardenError(Exception):
    """Base class of every error the gpuwarden driver raises."""


class DaemonUnreachable(GPUWardenError):
    """gpuwardend's socket does not exist or cannot be connected to."""


class DaemonTimeout(GPUWardenError):
    """gpuwardend did not answer within [gpuwarden] request_timeout, after
    [gpuwarden] retries further attempts."""


class ProtocolError(GPUWardenError):
    """The reply is not a valid protocol message: not msgpack, not a map,
    a missing or mistyped envelope field, the wrong request id, too large."""


class UnsupportedVersion(ProtocolError):
    """The daemon speaks a protocol major version this driver does not
    (or refused ours with error code ``unsupported_version``)."""


class DaemonError(GPUWardenError):
    """The daemon answered ``ok: false``; ``code`` is its error code."""

    def __init__(self, op, code, message, field=None):
        where = f" ({field})" if field else ""
        super().__init__(f"gpuwardend refused {op!r}: {code}{where}: "
                         f"{message}")
        self.op = op
        self.code = code
        self.message = message
        self.field = field


class InventoryError(GPUWardenError):
    """The inventory is well-formed protocol but cannot be reported as it
    is (a field of the wrong type, a bad PCI address, a duplicate name, an
    empty inventory, ...). Nothing is reported rather than part of it."""


class CyborgDefect(GPUWardenError):
    """The Cyborg this driver runs in has a known defect that would make
    the daemon's inventory unsafe to report (see cyborg_compat)."""
