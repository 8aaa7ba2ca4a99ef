"""Errors of tenant, plan, key and admin-token operations.

They are GatewayErrors so the admin API renders them in OpenAI's shape as they are, and the CLI prints the same
messages.
"""

from __future__ import annotations

from tenantgate.core.errors import Conflict, NotFound


class _NotFoundById(NotFound):
    what = "object"

    def __init__(self, id_: str, *, param: str | None = None) -> None:
        super().__init__(f"No {self.what} with id {id_!r}.", param=param)


class TenantNotFound(_NotFoundById):
    what, code = "tenant", "tenant_not_found"


class PlanNotFound(_NotFoundById):
    what, code = "plan", "plan_not_found"


class KeyNotFound(_NotFoundById):
    what, code = "API key", "key_not_found"


class AdminTokenNotFound(_NotFoundById):
    what, code = "admin token", "admin_token_not_found"


class NameTaken(Conflict):
    def __init__(self, what: str, name: str) -> None:
        super().__init__(f"A {what} named {name!r} already exists.", param="name", code="name_taken")


class TenantNameTaken(NameTaken):
    def __init__(self, name: str) -> None:
        super().__init__("tenant", name)


class PlanNameTaken(NameTaken):
    def __init__(self, name: str) -> None:
        super().__init__("plan", name)


class TenantDeleted(Conflict):
    def __init__(self, tenant_id: str) -> None:
        super().__init__(f"Tenant {tenant_id!r} was deleted; it can no longer be changed.", code="tenant_deleted")


class KeyRevoked(Conflict):
    def __init__(self, key_id: str) -> None:
        super().__init__(f"API key {key_id!r} is revoked; it can no longer be changed.", code="key_revoked")


class PlanInUse(Conflict):
    def __init__(self, plan_id: str, tenants: int) -> None:
        super().__init__(
            f"Plan {plan_id!r} is used by {tenants} tenant(s); move them to another plan first.", code="plan_in_use"
        )


class PriceOverrideNotFound(_NotFoundById):
    what, code = "price override", "price_override_not_found"
