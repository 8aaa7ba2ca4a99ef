// The operator's views (admin role): tenants and their keys, upstream keys and console tokens; plans; prices;
// admin tokens; the audit log. Every change is a call to the admin API, whose validation and errors are shown
// as they come back: nothing is checked here that the server does not check.
import { get, post, api, query, type Page } from "../api";
import { clear, field, h, table, toast } from "../dom";
import * as f from "../format";
import { actionButton, form, input, numberOrNull, pagedTable, section, shownOnce, text, type Paged } from "../ui";

interface Tenant {
  id: string;
  name: string;
  status: string;
  plan_id: string | null;
  rpm: number | null;
  tpm: number | null;
  monthly_budget_usd: string | null;
  created_at: string;
}
interface Plan {
  id: string;
  name: string;
  rpm: number | null;
  tpm: number | null;
  rpd: number | null;
  monthly_token_quota: number | null;
  monthly_budget_usd: string | null;
}
export interface Key {
  id: string;
  tenant_id: string;
  name: string;
  prefix: string;
  status: string;
  rpm: number | null;
  tpm: number | null;
  expires_at: string | null;
  last_used_at: string | null;
  created_at: string;
}
interface Created extends Key {
  key: string;
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
const PAGE = 50;
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

export async function tenantsView(main: HTMLElement): Promise<void> {
  const plans = await everything<Plan>((after) => `/admin/plans${query({ limit: 100, after })}`);
  const planName = new Map(plans.map((plan) => [plan.id, plan.name]));
  const planSelect = h("select", { name: "plan_id" }, h("option", { value: "" }, "no plan"), ...plans.map((p) => h("option", { value: p.id }, p.name)));
  const detail = h("div", { id: "tenant-detail" });
  const listing = h("div", { id: "tenant-listing" });
  let list: Paged<Tenant>;
  const cells = (tenant: Tenant) => [
    tenant.name, h("span", { class: `state ${tenant.status}` }, tenant.status), planName.get(tenant.plan_id ?? "") ?? "–",
    tenant.rpm ?? "plan", f.when(tenant.created_at),
    h("span", { class: "actions" },
      actionButton("Manage", async () => { selected = tenant.id; await showTenant(detail, tenant.id, main, list); }),
      tenant.status === "active"
        ? actionButton("Suspend", async () => changed(await post<Tenant>(`/admin/tenants/${tenant.id}/suspend`)), `Suspend ${tenant.name}? Its keys will be refused.`)
        : tenant.status === "suspended" ? actionButton("Resume", async () => changed(await post<Tenant>(`/admin/tenants/${tenant.id}/resume`))) : null),
  ];
  const changed = async (tenant: Tenant) => {
    list.update(tenant);
    if (selected === tenant.id) await showTenant(detail, tenant.id, main, list);
  };
  const showList = async () => {
    const path = (after?: string) => `/admin/tenants${query({ limit: PAGE, name: search, after })}`;
    list = pagedTable("tenant-list", search ? `Tenants whose name contains “${search}”` : "Tenants, newest first", ["name", "status", "plan", "rpm", "created", ""],
      await get<Page<Tenant>>(path()), (after) => get<Page<Tenant>>(path(after)), cells, search ? "no tenant has that in its name" : "nothing yet");
    listing.replaceChildren(list.element);
  };
  const find = input("name", { type: "search", value: search, maxlength: "200", placeholder: "part of a name" });
  clear(main);
  main.append(
    h("h1", {}, "Tenants"),
    section(
      "New tenant",
      form("tenant-create", "New tenant", [field("Name", input("name", { required: true, maxlength: "200" })), field("Plan", planSelect),
        field("Requests per minute", input("rpm", { type: "number", min: "0" }), "empty: the plan's")], "Create tenant",
        async (data) => {
          const tenant = await post<Tenant>("/admin/tenants", { name: text(data, "name"), plan_id: text(data, "plan_id") || null, rpm: numberOrNull(data, "rpm") });
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
      await showTenant(detail, selected, main, list!);
    } catch {
      selected = null; // deleted meanwhile
    }
  }
}

async function showTenant(detail: HTMLElement, id: string, main: HTMLElement, list: Paged<Tenant>): Promise<void> {
  // Read afresh on every change: the form shows what was saved, and the list's row says the same.
  const keysPath = (after?: string) => `/admin/tenants/${id}/keys${query({ limit: PAGE, after })}`;
  const [tenant, keys, upstreams] = await Promise.all([
    get<Tenant>(`/admin/tenants/${id}`),
    get<Page<Key>>(keysPath()),
    get<UpstreamKey[]>(`/admin/tenants/${id}/upstream-keys`),
  ]);
  list.update(tenant);
  const secret = h("div", { id: "key-secret" });
  const limits = h("div", { id: "key-limits" });
  const reload = () => showTenant(detail, id, main, list);
  clear(detail);
  detail.append(
    h("h2", { id: "tenant-heading" }, `Tenant ${tenant.name}`),
    section("Limits", form("tenant-limits", "Tenant limits", [
      field("Requests per minute", input("rpm", { type: "number", value: tenant.rpm === null ? "" : String(tenant.rpm) }), "empty: the plan's"),
      field("Tokens per minute", input("tpm", { type: "number", value: tenant.tpm === null ? "" : String(tenant.tpm) })),
      field("Monthly budget (USD)", input("monthly_budget_usd", { inputmode: "decimal", value: tenant.monthly_budget_usd ?? "" })),
    ], "Save limits", async (data) => {
      const budget = text(data, "monthly_budget_usd");
      await api("PATCH", `/admin/tenants/${tenant.id}`, { rpm: numberOrNull(data, "rpm"), tpm: numberOrNull(data, "tpm"), monthly_budget_usd: budget === "" ? null : budget });
      await reload();
      toast("Limits saved.");
    })),
    section("API keys",
      form("key-create", "New API key", [field("Key name", input("name", { value: "default", maxlength: "200" })),
        field("Key requests per minute", input("rpm", { type: "number", min: "0" }), "empty: the tenant's")], "Create key", async (data) => {
        const created = await post<Created>(`/admin/tenants/${tenant.id}/keys`, { name: text(data, "name") || "default", rpm: numberOrNull(data, "rpm") });
        await reload();
        document.getElementById("key-secret")?.append(shownOnce(`New key ${created.name}`, created.key));
      }),
      secret,
      pagedTable("key-list", `Keys of ${tenant.name}, newest first`, ["name", "prefix", "status", "rpm", "last used", ""], keys, (after) => get<Page<Key>>(keysPath(after)),
        (key) => [key.name, h("code", {}, `${key.prefix}…`), h("span", { class: `state ${key.status}` }, key.status), key.rpm ?? "tenant", f.when(key.last_used_at),
          h("span", { class: "actions" },
            actionButton("Limits", async () => showLimits(limits, await get(`/admin/keys/${key.id}/limits`))),
            key.status === "active" ? actionButton("Rotate", async () => {
              const rotated = await post<Created>(`/admin/keys/${key.id}/rotate`, { grace_seconds: 3600 });
              await reload();
              document.getElementById("key-secret")?.append(shownOnce(`Rotated key ${rotated.name} (the old one works for another hour)`, rotated.key));
            }) : null,
            key.status === "active" ? actionButton("Revoke", async () => { await post(`/admin/keys/${key.id}/revoke`); await reload(); }, `Revoke key ${key.name}? It is refused everywhere within a second.`) : null),
        ]).element,
      limits),
    section("Upstream keys (bring your own)",
      h("p", { class: "muted" }, "Stored encrypted; never shown back."),
      table("upstream-key-list", "Upstream keys", ["upstream", "endpoint", "updated", ""], upstreams.map((row) => [row.upstream, row.base_url ?? "configured", f.when(row.updated_at),
        actionButton("Remove", async () => { await api("DELETE", `/admin/tenants/${tenant.id}/upstream-keys/${encodeURIComponent(row.upstream)}`); await reload(); }, `Remove the ${row.upstream} key?`)])),
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

export function showLimits(where: HTMLElement, view: unknown): void {
  // The shape of GET /v1/me: limits.key and limits.tenant, each window with limit, used and remaining.
  const data = (view as { limits?: Record<string, Record<string, Record<string, unknown>>> }).limits ?? {};
  const rows: (string | number)[][] = [];
  for (const scope of ["key", "tenant"]) {
    for (const [name, value] of Object.entries(data[scope] ?? {})) {
      if (value && typeof value === "object" && "limit" in value) {
        // Money windows (monthly_budget_usd) in dollars and cents, never rounded to a whole number of dollars.
        const show = name.endsWith("_usd") ? money : fmt;
        const limit = value.limit === null ? "no limit" : show(value.limit);
        rows.push([scope, name.replace(/_usd$/, "").replaceAll("_", " "), limit, show(value.used ?? value.spent ?? value.in_flight), show(value.remaining)]);
      }
    }
  }
  where.replaceChildren(table("limits", "Limits and what is left now", ["scope", "limit", "set to", "used", "remaining"], rows));
}

function fmt(value: unknown): string {
  if (value === null || value === undefined) return "–";
  return typeof value === "number" ? f.count(value) : String(value);
}

function money(value: unknown): string {
  if (value === null || value === undefined || value === "") return "–";
  const amount = Number(value);
  return Number.isFinite(amount) ? f.usd(amount) : String(value);
}

export async function plansView(main: HTMLElement): Promise<void> {
  const path = (after?: string) => `/admin/plans${query({ limit: PAGE, after })}`;
  const plans = await get<Page<Plan>>(path());
  clear(main);
  main.append(
    h("h1", {}, "Plans"),
    section("New plan", form("plan-create", "New plan", [field("Plan name", input("name", { required: true })), field("Requests per minute", input("rpm", { type: "number" })),
      field("Tokens per minute", input("tpm", { type: "number" })), field("Monthly token quota", input("monthly_token_quota", { type: "number" })),
      field("Monthly budget (USD)", input("monthly_budget_usd", { inputmode: "decimal" }))], "Create plan", async (data) => {
      const budget = text(data, "monthly_budget_usd");
      await post("/admin/plans", { name: text(data, "name"), rpm: numberOrNull(data, "rpm"), tpm: numberOrNull(data, "tpm"), monthly_token_quota: numberOrNull(data, "monthly_token_quota"), monthly_budget_usd: budget || null });
      toast("Plan created.");
      await plansView(main);
    })),
    section("Plans", pagedTable("plan-list", "Plans", ["name", "rpm", "tpm", "rpd", "monthly tokens", "monthly budget", ""], plans, (after) => get<Page<Plan>>(path(after)),
      (plan) => [plan.name, fmt(plan.rpm), fmt(plan.tpm), fmt(plan.rpd), fmt(plan.monthly_token_quota), money(plan.monthly_budget_usd),
        actionButton("Delete", async () => { await api("DELETE", `/admin/plans/${plan.id}`); await plansView(main); }, `Delete plan ${plan.name}?`)]).element),
  );
}

interface Price {
  id: string;
  scope: string;
  tenant_id: string | null;
  plan_id: string | null;
  model: string;
  input_per_1m: string;
  cached_input_per_1m: string | null;
  output_per_1m: string;
  effective_from: string;
}

export async function pricesView(main: HTMLElement): Promise<void> {
  const path = (after?: string) => `/admin/prices${query({ limit: PAGE, after })}`;
  const prices = await get<Page<Price>>(path());
  clear(main);
  main.append(
    h("h1", {}, "Price overrides"),
    section("New price", form("price-create", "New price override", [field("Model (or prefix)", input("model", { required: true })),
      field("Input USD per 1M tokens", input("input_per_1m", { required: true, inputmode: "decimal" })), field("Output USD per 1M tokens", input("output_per_1m", { required: true, inputmode: "decimal" })),
      field("Tenant id (optional)", input("tenant_id"))], "Save price", async (data) => {
      await post("/admin/prices", { model: text(data, "model"), input_per_1m: text(data, "input_per_1m"), output_per_1m: text(data, "output_per_1m"), tenant_id: text(data, "tenant_id") || null });
      toast("Price saved.");
      await pricesView(main);
    })),
    section("Prices", pagedTable("price-list", "Price overrides, newest first", ["model", "scope", "input /1M", "output /1M", "from", ""], prices, (after) => get<Page<Price>>(path(after)),
      (price) => [price.model, price.scope + (price.tenant_id ? ` ${price.tenant_id}` : price.plan_id ? ` ${price.plan_id}` : ""), `$${price.input_per_1m}`, `$${price.output_per_1m}`,
        f.when(price.effective_from),
        actionButton("Delete", async () => { await api("DELETE", `/admin/prices/${price.id}`); await pricesView(main); }, `Delete the ${price.model} price? Recorded usage keeps its cost.`)]).element),
  );
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

interface Audit {
  id: string;
  created_at: string;
  actor_id: string;
  actor_role: string | null;
  action: string;
  target_type: string;
  target_id: string;
  tenant_id: string | null;
  after: Record<string, unknown> | null;
}

// The audit log's filters, as the admin API takes them (GET /admin/audit); kept while the view is left and back.
const auditFilters: Record<string, string> = { action: "", target_type: "", tenant_id: "", actor_id: "" };
const TARGETS = ["plan", "tenant", "key", "admin_token", "price_override", "upstream_key"];

export async function auditView(main: HTMLElement): Promise<void> {
  const listing = h("div", { id: "audit-listing" });
  const showList = async () => {
    const path = (after?: string) => `/admin/audit${query({ limit: PAGE, ...auditFilters, after })}`;
    listing.replaceChildren(pagedTable("audit-list", "Audit log", ["when", "actor", "action", "target", "tenant", "after"], await get<Page<Audit>>(path()),
      (after) => get<Page<Audit>>(path(after)), (entry) => [f.when(entry.created_at), `${entry.actor_id}${entry.actor_role ? ` (${entry.actor_role})` : ""}`, entry.action,
        `${entry.target_type} ${entry.target_id}`, entry.tenant_id ?? "–", h("code", { class: "json" }, entry.after ? JSON.stringify(entry.after) : "")],
      "no change matches").element);
  };
  const target = h("select", { name: "target_type" }, h("option", { value: "" }, "any"), ...TARGETS.map((name) => h("option", { value: name, selected: auditFilters.target_type === name }, name.replaceAll("_", " "))));
  clear(main);
  main.append(
    h("h1", {}, "Audit log"),
    section("Changes, newest first",
      form("audit-filter", "Filter the audit log", [
        field("Action", input("action", { value: auditFilters.action, placeholder: "key.revoke, or key." }), "“key.” matches every key action"),
        field("Target", target),
        field("Tenant id", input("tenant_id", { value: auditFilters.tenant_id, placeholder: "ten_…" }), "about this tenant or its keys"),
        field("Actor", input("actor_id", { value: auditFilters.actor_id, placeholder: "token id, bootstrap, cli" })),
      ], "Filter", async (data) => {
        for (const name of Object.keys(auditFilters)) auditFilters[name] = text(data, name);
        await showList();
      }),
      listing),
  );
  await showList();
}
