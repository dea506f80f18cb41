"""clockless sensors: file readers and writers, replay, live UDP input, the DVS emulator and frame capture, audio
sources and the spiking audio front end, event filters, recording, tonic dataset replay.

Names are loaded on first use, so ``import sensors`` does not compile kernels. Imports nothing from ``graphs`` or
``apps``.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> submodule that defines it
_EXPORTS = {
    "open_reader": "formats", "FORMATS": "formats", "detect_format": "formats", "Reader": "formats",
    "ReplaySource": "replay",
    "open_writer": "writers", "WRITABLE_FORMATS": "writers", "EventWriter": "writers",
    "HotPixelFilter": "filters", "BackgroundActivityFilter": "filters", "RefractoryFilter": "filters",
    "RegionOfInterest": "filters", "Transform": "filters", "ToImageOrientation": "filters", "Downsample": "filters",
    "check_in_sensor": "filters",
    "UdpSource": "udp", "send_events": "udp", "InivationSource": "inivation",
    "Record": "record",
    "TonicDatasetSource": "tonic_datasets",
    "DvsConfig": "emulator", "DvsEmulator": "emulator", "EmulatorSource": "emulator", "emulate_frames": "emulator",
    "Frame": "frames", "FrameSource": "frames",
    "AudioFileSource": "audio", "RawPcmSource": "audio", "MicrophoneSource": "audio", "audio_file_source": "audio",
    "cochlea_source": "audio",
    "AudioFrontEnd": "audio_frontend",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sensors' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"sensors.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
