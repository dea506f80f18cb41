"""Voice activity detection: training data, training, the segmenter sink and baseline wrappers."""
