"""Live monitoring: streaming anomaly detection over metric series (work in progress)."""
