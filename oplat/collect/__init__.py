"""Data collection: single-kernel models, measurement backends, samplers, the collect loop."""
