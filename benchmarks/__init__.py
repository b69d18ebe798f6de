"""``bench-device``: what every model costs (FLOPs, memory, latency) and scores, per board."""
