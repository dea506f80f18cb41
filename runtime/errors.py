"""Error types. Every message names where (file, node, field), what was expected, what was found, and a fix."""

from __future__ import annotations

__all__ = ["ClocklessError", "DeviceError", "EventRangeError", "FormatError", "GraphError", "NodeError", "StreamOrderError"]


class ClocklessError(Exception):
    """Base class: the CLI prints these as one line, without a traceback, and exits non-zero."""


class FormatError(ClocklessError):
    """A file could not be decoded as the format it claims (corrupt, truncated, wrong magic...)."""

    def __init__(self, path, message: str, *, offset: int | None = None):
        where = f"{path}" if offset is None else f"{path} at byte {offset}"
        super().__init__(f"{where}: {message}")
        self.path = str(path)
        self.offset = offset


class StreamOrderError(ClocklessError):
    """Timestamps went backwards where the rules do not allow it."""


class EventRangeError(ClocklessError):
    """An event lies outside the sensor its stream spec declares."""


class GraphError(ClocklessError):
    """A graph is not valid (unknown or duplicate names, cycles, mismatched streams, unconnected ports)."""


class NodeError(ClocklessError):
    """A node raised while the graph ran; the graph was stopped. The original exception is ``__cause__``."""

    def __init__(self, node: str, t_first_us: int | None, t_last_us: int | None, cause: BaseException):
        span = "before any packet" if t_first_us is None else f"on packet t=[{t_first_us}, {t_last_us}] µs"
        super().__init__(f"node '{node}' failed {span}: {type(cause).__name__}: {cause}")
        self.node = node
        self.t_first_us = t_first_us
        self.t_last_us = t_last_us


class DeviceError(ClocklessError):
    """A live device (camera, microphone, socket) could not be opened or failed."""
