"""Which models a caller may use, by name: its key's allow-list, and fine-tuned models only where they are its own.

A fine-tuned model (``ft:...``) on the platform's account was trained for someone: the operator, for one tenant, on
that tenant's data. Without an allow-list a key may use every model the upstream serves, which would make every
tenant's fine-tunes every tenant's. So a fine-tuned model is used only by a key whose allow-list names it (the
operator granted it), or on an upstream the tenant brought its own key for (its own account's fine-tunes are its).
"""

from __future__ import annotations

from tenantgate.core.principal import Principal
from tenantgate.platform.upstream.registry import Routing, Target

FINE_TUNED_PREFIX = "ft:"


def is_fine_tuned(model: str) -> bool:
    return model.startswith(FINE_TUNED_PREFIX)


def granted(principal: Principal, routing: Routing, model: str) -> bool:
    """Whether the allow-list lets the caller use ``model`` (by its name or its alias's); a fine-tuned model only
    when the allow-list names it."""
    names = (model, routing.canonical(model))
    if any(is_fine_tuned(name) for name in names):
        allowed = principal.allowed_models
        return allowed is not None and any(name in allowed for name in names)
    return any(principal.may_use(name) for name in names)


def on_own_upstreams(principal: Principal, targets: tuple[Target, ...]) -> tuple[Target, ...]:
    """The targets on an upstream the tenant brought its own key for (with its own base URL or not: either way
    the request reaches the tenant's own account)."""
    own = principal.upstream_keys
    return tuple(t for t in targets if t.upstream.name in own)
