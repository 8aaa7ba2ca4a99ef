"""Which models a caller may use, by name: its key's allow-list, and fine-tuned models only where they are its own.

A fine-tuned model (``ft:...``) on the platform's account was trained for someone: the operator, for one tenant, on
that tenant's data. Without an allow-list a key may use every model the upstream serves, which would make every
tenant's fine-tunes every tenant's. So a fine-tuned model is used only by a key whose allow-list names it (the
operator granted it), or on an upstream the tenant brought its own key for (its own account's fine-tunes are its).

What counts as a fine-tune is read the way the laxest upstream might read a name, not the way OpenAI does. OpenAI's
ids are case-sensitive, but an OpenAI-compatible upstream may fold them (a deployment table matched without case,
a server that trims or normalizes names), and a tenant that could spell a fine-tune so the gateway does not see the
``ft:`` would reach it: ``FT:...``, `` ft:...``, a no-break space first, fullwidth ``ft`` or colon all did, against
a folding upstream. So a name is a fine-tune when, after NFKC (twice, around casefolding), casefolding, removing
every whitespace, control and format character (zero-width spaces, BOMs) anywhere in it, and percent-decoding (a
front that decodes once more), it begins with ``ft:`` or holds ``:ft-`` (OpenAI's legacy ``curie:ft-org-...``
form). A name that merely looks like one is treated as one: a false positive costs that name a 404 unless an
allow-list names it exactly; a false negative hands over someone's fine-tune.

Every name a request can reach is checked: the name sent, its alias's public name, and the upstream model of each
deployment the routing table sends it to (``support-bot`` routed to ``ft:...`` is a fine-tune, granted only where an
allow-list names ``support-bot``). A deployment name that does not say it is a fine-tune (an Azure deployment
called ``support``) cannot be told apart here: routing a public name to it is granting it to every key without an
allow-list.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import unquote

from tenantgate.core.principal import Principal
from tenantgate.platform.upstream.registry import Routing, Target

FINE_TUNED_PREFIX = "ft:"
_LEGACY_FINE_TUNED = ":ft-"
_INVISIBLE = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})


def _normalized(name: str) -> str:
    if name.isascii() and name.isprintable() and " " not in name:
        return name.lower()  # the usual name: nothing to fold beyond case
    text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())
    return "".join(c for c in text if not c.isspace() and unicodedata.category(c) not in _INVISIBLE)


def _folded(name: str) -> str:
    """``name`` as the laxest upstream might read it (see the module's docstring)."""
    text = _normalized(name)
    for _ in range(3):  # percent-encoded, decoded by whoever reads it next (bounded: a deeper %2525... stays)
        decoded = unquote(text)
        if decoded == text:
            break
        text = _normalized(decoded)
    return text


def is_fine_tuned(model: str) -> bool:
    """Whether ``model`` could be read as a fine-tuned model's name by some upstream (see the module's docstring)."""
    folded = _folded(model)
    return folded.startswith(FINE_TUNED_PREFIX) or _LEGACY_FINE_TUNED in folded


def reaches_fine_tune(routing: Routing, model: str) -> bool:
    """Whether ``model``, its alias's public name or any deployment it is routed to is a fine-tuned model."""
    names = (model, routing.canonical(model), *(target.model for target in routing.targets(model)))
    return any(is_fine_tuned(name) for name in names)


def granted(principal: Principal, routing: Routing, model: str) -> bool:
    """Whether the allow-list lets the caller use ``model`` (by its name or its alias's); a fine-tuned model only
    when the allow-list names it."""
    names = (model, routing.canonical(model))
    if reaches_fine_tune(routing, model):
        allowed = principal.allowed_models
        return allowed is not None and any(name in allowed for name in names)
    return any(principal.may_use(name) for name in names)


def on_own_upstreams(principal: Principal, targets: tuple[Target, ...]) -> tuple[Target, ...]:
    """The targets on an upstream the tenant brought its own key for (with its own base URL or not: either way
    the request reaches the tenant's own account)."""
    own = principal.upstream_keys
    return tuple(t for t in targets if t.upstream.name in own)
