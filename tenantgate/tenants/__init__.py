"""Tenants, plans, API keys, limits and metering: who is calling and what they may do."""
