"""Usage metering: events, the durable spool, the batch writer, rollups and pricing (see meter.py)."""
