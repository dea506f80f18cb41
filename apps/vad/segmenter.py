"""The VAD segmenter sink lives in ``graphs.vad_segmenter`` (graphs may not import apps); re-exported here."""

from graphs.vad_segmenter import FRAME_US, SegmenterState, SpeechSegmenter, read_scores

__all__ = ["FRAME_US", "SegmenterState", "SpeechSegmenter", "read_scores"]
