"""Work that runs without a caller waiting: the poller of objects in flight and the billing of what they did."""
