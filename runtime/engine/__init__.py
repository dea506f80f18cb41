"""The clockless SNN engine: event-driven layers with exact decay, attention gates, counted operations.

A neuron is touched only when an event reaches it. See ``layers`` for the neuron model, ``network`` for the
stage that runs a whole chain of layers per packet, ``gates`` for the attention gates and ``dense`` for the
clock-driven numpy reference of the same network.
"""

from .gain import InputGain
from .gates import SpatialGate, TemporalGate
from .layers import ChannelGate, Conv2d, Flatten, Linear, Neuron, SumPool2d
from .network import Network, NetworkState

__all__ = [
    "ChannelGate", "Conv2d", "Flatten", "InputGain", "Linear", "Network", "NetworkState", "Neuron", "SpatialGate",
    "SumPool2d", "TemporalGate",
]
