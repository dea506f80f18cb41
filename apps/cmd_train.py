"""Train an app's spiking network offline with PyTorch (the ``train`` extra) and write its network file.

``clockless train gesture [options]`` renders scenes, emulates them into events and trains the gesture network;
``clockless train vad [options]`` mixes speech with noise and trains the voice-activity network. Options after
the app name go to the app's own trainer (``clockless train gesture --help``). Training runs on the CPU.
"""

from __future__ import annotations

import argparse
import importlib

from runtime.errors import ClocklessError

EXAMPLE = "clockless train gesture --out graphs/weights/gesture.npz"

TRAINERS = {"gesture": "apps.gesture.train", "vad": "apps.vad.train"}


def add_arguments(p) -> None:
    p.add_argument("app", choices=sorted(TRAINERS), help="which network to train")
    p.add_argument("options", nargs=argparse.REMAINDER, help="options for the app's trainer")


def run(args) -> int:
    try:
        importlib.import_module("torch")
    except ModuleNotFoundError:
        raise ClocklessError(
            "training needs PyTorch: pip install torch==2.13.0 (CPU build), then pip install -e '.[train]'"
        ) from None
    module = importlib.import_module(TRAINERS[args.app])
    return int(module.main(args.options) or 0)
