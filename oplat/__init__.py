"""oplat: operator-wise latency prediction for mobile ML models."""

__version__ = "0.1.0"
