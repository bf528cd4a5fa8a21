"""Pixels to embedding: decoding, preprocessing, the network and inference. Imports neither app nor training."""
