"""The framework-free core every layer may use: the request record and its usage, who is calling, the request
context, and the gateway's errors as data. It imports nothing of ``platform``, ``tenants`` or ``observability``."""
