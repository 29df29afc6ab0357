"""Topic layout. The partition count is part of the contract: changing it remaps keys
to other partitions and silently breaks per-sensor ordering for in-flight data."""

TOPIC = "sensor_metrics"
DLQ_TOPIC = "sensor_metrics.dlq"
PARTITIONS = 12
CONSUMER_GROUP = "sensorpipe-consumer"
