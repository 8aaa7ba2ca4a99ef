// The operator's views (admin role): tenants (settings, limits, keys, upstream keys, console tokens); plans;
// admin tokens. Prices and the audit log have their own modules. Every change is a call to the admin API, whose
// validation and errors are shown as they come back: nothing is checked here that the server does not check.
import { get, post, api, query, type Page } from "../api";
import { clear, field, h, table, toast } from "../dom";
import * as f from "../format";
import { quotaFields, quotaValues, rateFields, rateValues, type Quotas, type RateLimits } from "../limits";
import { remember } from "../names";
import { actionButton, form, input, pagedTable, section, shownOnce, text, type Paged } from "../ui";
import { fmt, keysSection, money, type Key } from "./keys";

export interface Tenant extends RateLimits, Quotas {
  id: string;
  name: string;
  status: string;
  plan_id: string | null;
  created_at: string;
}
export interface Plan extends RateLimits, Quotas {
  id: string;
  name: string;
}
interface UpstreamKey {
  upstream: string;
  base_url: string | null;
  updated_at: string;
}
interface Token {
  id: string;
  name: string;
  role: string;
  tenant_id: string | null;
  prefix: string;
  revoked_at: string | null;
  created_at: string;
}

// Pages of 50: "Load more" asks the admin API for the next one (has_more, after = the last id shown).
export const PAGE = 50;
let selected: string | null = null;
let search = "";

/** Every page of a short list (plans, for the tenant form's choice and names): rarely more than one. */
async function everything<T>(path: (after?: string) => string): Promise<T[]> {
  const out: T[] = [];
  let after: string | undefined;
  for (;;) {
    const page = await get<Page<T>>(path(after));
    out.push(...page.data);
    if (!page.has_more || page.last_id === null) return out;
    after = page.last_id;
  }
}

export async function allPlans(): Promise<Plan[]> {
  const plans = await everything<Plan>((after) => `/admin/plans${query({ limit: 100, after })}`);
  remember("plan", plans);
  return plans;
}

export function planSelect(plans: Plan[], current: string | null, none = "no plan"): HTMLSelectElement {
  return h("select", { name: "plan_id" }, h("option", { value: "" }, none),
    ...plans.map((p) => h("option", { value: p.id, selected: p.id === current }, p.name)));
}

export async function tenantsView(main: HTMLElement): Promise<void> {
  const plans = await allPlans();
  const planName = new Map(plans.map((plan) => [plan.id, plan.name]));
  const detail = h("div", { id: "tenant-detail" });
  const listing = h("div", { id: "tenant-listing" });
  let list: Paged<Tenant>;
  const cells = (tenant: Tenant) => [
    tenant.name, h("span", { class: `state ${tenant.status}` }, tenant.status), planName.get(tenant.plan_id ?? "") ?? "–",
    tenant.rpm ?? "plan", f.when(tenant.created_at),
    h("span", { class: "actions" },
      actionButton("Manage", async () => { selected = tenant.id; await showTenant(detail, tenant.id, main, () => list); }, undefined, `Manage ${tenant.name}`),
      tenant.status === "active"
        ? actionButton("Suspend", async () => changed(await post<Tenant>(`/admin/tenants/${tenant.id}/suspend`)), `Suspend ${tenant.name}? Its keys will be refused.`, `Suspend ${tenant.name}`)
        : tenant.status === "suspended" ? actionButton("Resume", async () => changed(await post<Tenant>(`/admin/tenants/${tenant.id}/resume`)), undefined, `Resume ${tenant.name}`) : null),
  ];
  const changed = async (tenant: Tenant) => {
    list.update(tenant);
    if (selected === tenant.id) await showTenant(detail, tenant.id, main, () => list);
  };
  const showList = async () => {
    const path = (after?: string) => `/admin/tenants${query({ limit: PAGE, name: search, after })}`;
    const first = await get<Page<Tenant>>(path());
    remember("tenant", first.data);
    list = pagedTable("tenant-list", search ? `Tenants whose name contains “${search}”` : "Tenants, newest first", ["name", "status", "plan", "rpm", "created", ""],
      first, (after) => get<Page<Tenant>>(path(after)), cells, search ? "no tenant has that in its name" : "nothing yet");
    listing.replaceChildren(list.element);
  };
  const find = input("name", { type: "search", value: search, maxlength: "200", placeholder: "part of a name" });
  clear(main);
  main.append(
    h("h1", {}, "Tenants"),
    section(
      "New tenant",
      // The admin API's tenant create takes every limit a tenant can set: they are all here, empty = the plan's.
      form("tenant-create", "New tenant", [field("Name", input("name", { required: true, maxlength: "200" })), field("Plan", planSelect(plans, null), "its limits apply where the tenant sets none"),
        ...rateFields(null, "the plan's"), ...quotaFields(null, "the plan's")], "Create tenant",
        async (data) => {
          const tenant = await post<Tenant>("/admin/tenants", { name: text(data, "name"), plan_id: text(data, "plan_id") || null, ...rateValues(data), ...quotaValues(data) });
          selected = tenant.id;
          toast(`Tenant ${tenant.name} created.`);
          await tenantsView(main);
        }),
    ),
    section("All tenants",
      form("tenant-search", "Find tenants", [field("Find by name", find, "any part of the name, upper or lower case")], "Find", async (data) => {
        search = text(data, "name");
        await showList();
      }),
      listing),
    detail,
  );
  await showList();
  if (selected) {
    try {
      await showTenant(detail, selected, main, () => list);
    } catch {
      selected = null; // deleted meanwhile
    }
  }
}

/** `listed` gives the list shown now: a search may have replaced the one whose Manage button was pressed. */
async function showTenant(detail: HTMLElement, id: string, main: HTMLElement, listed: () => Paged<Tenant>): Promise<void> {
  // Read afresh on every change: the form shows what was saved, and the list's row says the same.
  const [tenant, keys, upstreams, plans] = await Promise.all([
    get<Tenant>(`/admin/tenants/${id}`),
    get<Page<Key>>(`/admin/tenants/${id}/keys${query({ limit: PAGE })}`),
    get<UpstreamKey[]>(`/admin/tenants/${id}/upstream-keys`),
    allPlans(),
  ]);
  listed().update(tenant);
  const reload = () => showTenant(detail, id, main, listed);
  const plan = planSelect(plans, tenant.plan_id);
  clear(detail);
  detail.append(
    h("h2", { id: "tenant-heading" }, `Tenant ${tenant.name}`),
    section("Settings and limits", form("tenant-limits", "Tenant settings and limits", [
      field("Name", input("name", { value: tenant.name, maxlength: "200" })), field("Plan", plan, "its limits apply where the tenant sets none"),
      ...rateFields(tenant, "the plan's"), ...quotaFields(tenant, "the plan's"),
    ], "Save limits", async (data) => {
      await api("PATCH", `/admin/tenants/${tenant.id}`, { name: text(data, "name"), plan_id: text(data, "plan_id") || null, ...rateValues(data), ...quotaValues(data) });
      await reload();
      toast("Limits saved.");
    })),
    keysSection(tenant, keys, reload),
    section("Upstream keys (bring your own)",
      h("p", { class: "muted" }, "Stored encrypted; never shown back."),
      table("upstream-key-list", "Upstream keys", ["upstream", "endpoint", "updated", ""], upstreams.map((row) => [row.upstream, row.base_url ?? "configured", f.when(row.updated_at),
        actionButton("Remove", async () => { await api("DELETE", `/admin/tenants/${tenant.id}/upstream-keys/${encodeURIComponent(row.upstream)}`); await reload(); }, `Remove the ${row.upstream} key?`, `Remove the ${row.upstream} upstream key`)])),
      form("upstream-key-set", "Set an upstream key", [field("Upstream", input("upstream", { required: true })), field("Upstream API key", input("api_key", { type: "password", required: true, autocomplete: "off" })),
        field("Endpoint (optional)", input("base_url", { placeholder: "https://…" }))], "Save upstream key", async (data) => {
        const base = text(data, "base_url");
        await api("PUT", `/admin/tenants/${tenant.id}/upstream-keys/${encodeURIComponent(text(data, "upstream"))}`, { api_key: text(data, "api_key"), base_url: base || null });
        toast("Upstream key saved.");
        await reload();
      })),
    section("Console access for this tenant",
      h("p", { class: "muted" }, "A tenant token signs in to the tenant portal: its own usage, limits and keys, nothing else."),
      form("tenant-token-create", "New tenant console token", [field("Token name", input("name", { required: true, value: `${tenant.name} console` }))], "Create console token", async (data) => {
        const token = await post<Token & { token: string }>("/admin/tokens", { name: text(data, "name"), role: "tenant", tenant_id: tenant.id });
        document.getElementById("tenant-token-secret")?.replaceChildren(shownOnce("New tenant console token", token.token));
      }),
      h("div", { id: "tenant-token-secret" })),
    section("Danger zone", actionButton("Delete tenant", async () => { await api("DELETE", `/admin/tenants/${tenant.id}`); selected = null; await tenantsView(main); }, `Delete ${tenant.name}? Its keys are revoked; usage history is kept.`)),
  );
  document.getElementById("tenant-heading")?.scrollIntoView({ block: "start" });
}

export async function plansView(main: HTMLElement): Promise<void> {
  const path = (after?: string) => `/admin/plans${query({ limit: PAGE, after })}`;
  const plans = await get<Page<Plan>>(path());
  const editor = h("div", { id: "plan-editor" });
  clear(main);
  main.append(
    h("h1", {}, "Plans"),
    section("New plan", form("plan-create", "New plan", [field("Plan name", input("name", { required: true })), ...rateFields(null, "no limit"), ...quotaFields(null, "no limit")],
      "Create plan", async (data) => {
        await post("/admin/plans", { name: text(data, "name"), ...rateValues(data), ...quotaValues(data) });
        toast("Plan created.");
        await plansView(main);
      })),
    section("Plans", pagedTable("plan-list", "Plans", ["name", "rpm", "tpm", "rpd", "monthly tokens", "monthly budget", ""], plans, (after) => get<Page<Plan>>(path(after)),
      (plan) => [plan.name, fmt(plan.rpm), fmt(plan.tpm), fmt(plan.rpd), fmt(plan.monthly_token_quota), money(plan.monthly_budget_usd),
        h("span", { class: "actions" },
          actionButton("Edit", async () => editPlan(editor, plan, main), undefined, `Edit plan ${plan.name}`),
          actionButton("Delete", async () => { await api("DELETE", `/admin/plans/${plan.id}`); await plansView(main); }, `Delete plan ${plan.name}?`, `Delete plan ${plan.name}`))]).element),
    editor,
  );
}

/** Changes apply to every tenant on the plan within a second (the admin API invalidates their cached limits). */
async function editPlan(editor: HTMLElement, plan: Plan, main: HTMLElement): Promise<void> {
  editor.replaceChildren(section(`Plan ${plan.name}`,
    form("plan-edit", `Edit plan ${plan.name}`, [field("Plan name", input("name", { value: plan.name, maxlength: "200" })), ...rateFields(plan, "no limit"), ...quotaFields(plan, "no limit")],
      "Save plan", async (data) => {
        const saved = await api<Plan>("PATCH", `/admin/plans/${plan.id}`, { name: text(data, "name"), ...rateValues(data), ...quotaValues(data) });
        await plansView(main);
        const again = document.getElementById("plan-editor");
        if (again) await editPlan(again, saved, main);
        toast(`Plan ${saved.name} saved.`);
      })));
  editor.scrollIntoView({ block: "start" });
}

export async function tokensView(main: HTMLElement): Promise<void> {
  const path = (after?: string) => `/admin/tokens${query({ limit: PAGE, after })}`;
  const tokens = await get<Page<Token>>(path());
  const role = h("select", { name: "role" }, h("option", { value: "billing" }, "billing (read-only)"), h("option", { value: "admin" }, "admin"));
  clear(main);
  main.append(
    h("h1", {}, "Admin tokens"),
    section("New token", form("token-create", "New admin token", [field("Token name", input("name", { required: true })), field("Role", role)], "Create token", async (data) => {
      const created = await post<Token & { token: string }>("/admin/tokens", { name: text(data, "name"), role: text(data, "role") });
      await tokensView(main);
      main.querySelector("#token-secret")?.append(shownOnce(`New ${created.role} token`, created.token));
    }), h("div", { id: "token-secret" })),
    section("Tokens", pagedTable("token-list", "Admin tokens", ["name", "role", "tenant", "prefix", "state", ""], tokens, (after) => get<Page<Token>>(path(after)),
      (token) => [token.name, token.role, token.tenant_id ?? "–", h("code", {}, `${token.prefix}…`), token.revoked_at ? "revoked" : "active",
        token.revoked_at ? null : actionButton("Revoke", async () => { await post(`/admin/tokens/${token.id}/revoke`); await tokensView(main); }, `Revoke ${token.name}?`)]).element),
  );
}

