"""clockless runtime: packets, stream specs, graphs, the trio executor, metrics and reports.

Imports nothing from ``sensors``, ``graphs`` or ``apps``.
"""

from .errors import ClocklessError, DeviceError, EventRangeError, FormatError, GraphError, NodeError, StreamOrderError
from .events import AUDIO_EVENT, DECISION_EVENT, DVS_EVENT, SPIKE_EVENT, empty_events, make_dvs_events
from .packet import Packet, Packetizer, check_packet, concat_events, make_packet, packetize
from .spec import StreamSpec, audio_spec, decision_spec, dvs_spec, spike_spec
from .stage import COUNTER_KEYS, OpenSource, Sink, Source, Stage
from .graph import Graph
from .executor import RunInterrupted, run, run_async
from .reference import run_reference
from .sources import ArraySource, IterSource, Limited
from .stages import CollectSink, CountSink, Delay, Identity
from .report import format_table, write_json

__all__ = [
    "ArraySource", "CollectSink", "CountSink", "Delay", "EventRangeError", "Graph", "Identity", "IterSource", "Limited",
    "RunInterrupted", "format_table", "run", "run_async", "run_reference", "write_json",
    "AUDIO_EVENT", "COUNTER_KEYS", "ClocklessError", "DECISION_EVENT", "DVS_EVENT", "DeviceError", "FormatError",
    "GraphError", "NodeError", "OpenSource", "Packet", "Packetizer", "SPIKE_EVENT", "Sink", "Source", "Stage",
    "StreamOrderError", "StreamSpec", "audio_spec", "check_packet", "concat_events", "decision_spec", "dvs_spec",
    "empty_events", "make_dvs_events", "make_packet", "packetize", "spike_spec",
]
