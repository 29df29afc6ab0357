"""`sensorpipe dlq`: browse dead letters and redrive the ones that now pass."""
