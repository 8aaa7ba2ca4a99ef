"""The tenants domain's enumerations, free of SQLAlchemy: the command line's options are typed with them, and
``tenantgate --help`` must answer without loading the database layer (tests/test_cli_help.py)."""

from __future__ import annotations

from enum import StrEnum


class TenantStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    DELETED = "deleted"


class KeyStatus(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"


class AdminRole(StrEnum):
    ADMIN = "admin"  # everything
    BILLING = "billing"  # read-only: usage, tenants, plans, keys
    TENANT = "tenant"  # one tenant's console: its own usage, limits and keys, nothing of the admin API
