"""Stored prompts (``{"prompt": {"id": "pmpt_..."}}`` on the Responses API): which a tenant may run.

A stored prompt lives in an upstream account, made in its dashboard, never through the gateway, so the gateway
cannot know which tenant it was made for: in the platform's shared account, any tenant that learns an id could run
the prompt the operator wrote for another (its instructions, tools and the files or vector stores they name). So a
platform-account prompt is usable only when the operator granted it (``TENANTGATE_PLATFORM_PROMPTS``): to every
tenant (``pmpt_x``), to one (``<tenant id>:pmpt_x``), or, as before this rule, every prompt to every tenant (``*``).
A prompt in a tenant's own account (BYOK: every target of the request is that tenant's key) is the tenant's. Any
other prompt id gets the 404 of an object that does not exist, before anything reaches the upstream.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from tenantgate.core.principal import Principal
from tenantgate.platform.proxy.references import Reference
from tenantgate.platform.upstream.registry import Target


@dataclass(frozen=True, slots=True)
class PromptGrants:
    everything: bool
    every_tenant: frozenset[str]
    by_tenant: frozenset[tuple[str, str]]

    def allow(self, tenant_id: str, prompt_id: str) -> bool:
        return self.everything or prompt_id in self.every_tenant or (tenant_id, prompt_id) in self.by_tenant


@lru_cache(maxsize=4)
def grants(entries: tuple[str, ...]) -> PromptGrants:
    every: set[str] = set()
    by_tenant: set[tuple[str, str]] = set()
    for entry in entries:
        tenant, _, prompt = entry.rpartition(":")
        if tenant:
            by_tenant.add((tenant, prompt))
        else:
            every.add(prompt)
    return PromptGrants("*" in every, frozenset(every - {"*"}), frozenset(by_tenant))


def own_account(principal: Principal, upstreams: Iterable[str]) -> bool:
    """Whether every upstream the request may go to is reached with the tenant's own key (BYOK)."""
    names = list(upstreams)
    return bool(names) and all(name in principal.upstream_keys for name in names)


def unchecked(
    named: Sequence[Reference], principal: Principal, entries: Sequence[str], targets: tuple[Target, ...]
) -> list[Reference]:
    """``named`` without the stored prompts the caller may run where the request goes; what is left is checked for
    ownership (proxy/stored.py), and a prompt there is nobody's: 404."""
    if not any(r.kind == "prompt" for r in named):
        return list(named)
    mine = own_account(principal, (t.upstream.name for t in targets))
    return [r for r in named if r.kind != "prompt" or not (mine or _granted(principal, entries, r.id))]


def _granted(principal: Principal, entries: Sequence[str], prompt_id: str) -> bool:
    return grants(tuple(entries)).allow(principal.tenant_id, prompt_id)


def batch_unchecked(
    named: Sequence[Reference], principal: Principal, entries: Sequence[str], account_upstream: str
) -> list[Reference]:
    """The same for a batch line, which runs in the account the batch is made in (``account_upstream``'s)."""
    if not any(r.kind == "prompt" for r in named):
        return list(named)
    mine = own_account(principal, (account_upstream,))
    return [r for r in named if r.kind != "prompt" or not (mine or _granted(principal, entries, r.id))]
