// The operator's views (admin role): tenants and their keys, upstream keys and console tokens; plans; prices;
// admin tokens; the audit log. Every change is a call to the admin API, whose validation and errors are shown
// as they come back: nothing is checked here that the server does not check.
import { get, post, api, query, type Page } from "../api";
import { clear, field, h, table, toast } from "../dom";
import * as f from "../format";
import { actionButton, form, input, numberOrNull, section, shownOnce, text } from "../ui";

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

let selected: string | null = null;

export async function tenantsView(main: HTMLElement): Promise<void> {
  const [tenants, plans] = await Promise.all([get<Page<Tenant>>("/admin/tenants?limit=100"), get<Page<Plan>>("/admin/plans?limit=100")]);
  const planName = new Map(plans.data.map((plan) => [plan.id, plan.name]));
  const planSelect = h("select", { name: "plan_id" }, h("option", { value: "" }, "no plan"), ...plans.data.map((p) => h("option", { value: p.id }, p.name)));
  const detail = h("div", { id: "tenant-detail" });
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
    section("All tenants", table("tenant-list", "Tenants", ["name", "status", "plan", "rpm", "created", ""],
      tenants.data.map((tenant) => [
        tenant.name, h("span", { class: `state ${tenant.status}` }, tenant.status), planName.get(tenant.plan_id ?? "") ?? "–",
        tenant.rpm ?? "plan", f.when(tenant.created_at),
        h("span", { class: "actions" },
          actionButton("Manage", async () => { selected = tenant.id; await showTenant(detail, tenant, main); }),
          tenant.status === "active"
            ? actionButton("Suspend", async () => { await post(`/admin/tenants/${tenant.id}/suspend`); await tenantsView(main); }, `Suspend ${tenant.name}? Its keys will be refused.`)
            : tenant.status === "suspended" ? actionButton("Resume", async () => { await post(`/admin/tenants/${tenant.id}/resume`); await tenantsView(main); }) : null),
      ]))),
    detail,
  );
  const current = tenants.data.find((tenant) => tenant.id === selected);
  if (current) await showTenant(detail, current, main);
}

async function showTenant(detail: HTMLElement, tenant: Tenant, main: HTMLElement): Promise<void> {
  const [keys, upstreams] = await Promise.all([
    get<Page<Key>>(`/admin/tenants/${tenant.id}/keys?limit=100`),
    get<UpstreamKey[]>(`/admin/tenants/${tenant.id}/upstream-keys`),
  ]);
  const secret = h("div", { id: "key-secret" });
  const limits = h("div", { id: "key-limits" });
  const reload = () => showTenant(detail, tenant, main);
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
      table("key-list", `Keys of ${tenant.name}`, ["name", "prefix", "status", "rpm", "last used", ""],
        keys.data.map((key) => [key.name, h("code", {}, `${key.prefix}…`), h("span", { class: `state ${key.status}` }, key.status), key.rpm ?? "tenant", f.when(key.last_used_at),
          h("span", { class: "actions" },
            actionButton("Limits", async () => showLimits(limits, await get(`/admin/keys/${key.id}/limits`))),
            key.status === "active" ? actionButton("Rotate", async () => {
              const rotated = await post<Created>(`/admin/keys/${key.id}/rotate`, { grace_seconds: 3600 });
              await reload();
              document.getElementById("key-secret")?.append(shownOnce(`Rotated key ${rotated.name} (the old one works for another hour)`, rotated.key));
            }) : null,
            key.status === "active" ? actionButton("Revoke", async () => { await post(`/admin/keys/${key.id}/revoke`); await reload(); }, `Revoke key ${key.name}? It is refused everywhere within a second.`) : null),
        ])),
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
        const limit = value.limit === null ? "no limit" : fmt(value.limit);
        rows.push([scope, name.replaceAll("_", " "), limit, fmt(value.used ?? value.spent ?? value.in_flight), fmt(value.remaining)]);
      }
    }
  }
  where.replaceChildren(table("limits", "Limits and what is left now", ["scope", "limit", "set to", "used", "remaining"], rows));
}

function fmt(value: unknown): string {
  if (value === null || value === undefined) return "–";
  return typeof value === "number" ? f.count(value) : String(value);
}

export async function plansView(main: HTMLElement): Promise<void> {
  const plans = await get<Page<Plan>>("/admin/plans?limit=100");
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
    section("Plans", table("plan-list", "Plans", ["name", "rpm", "tpm", "rpd", "monthly tokens", "monthly budget", ""], plans.data.map((plan) => [plan.name, fmt(plan.rpm), fmt(plan.tpm), fmt(plan.rpd),
      fmt(plan.monthly_token_quota), plan.monthly_budget_usd === null ? "–" : f.usd(Number(plan.monthly_budget_usd)),
      actionButton("Delete", async () => { await api("DELETE", `/admin/plans/${plan.id}`); await plansView(main); }, `Delete plan ${plan.name}?`)]))),
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
  const prices = await get<Page<Price>>("/admin/prices?limit=100");
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
    section("Prices", table("price-list", "Price overrides, newest first", ["model", "scope", "input /1M", "output /1M", "from", ""], prices.data.map((price) => [price.model,
      price.scope + (price.tenant_id ? ` ${price.tenant_id}` : price.plan_id ? ` ${price.plan_id}` : ""), `$${price.input_per_1m}`, `$${price.output_per_1m}`, f.when(price.effective_from),
      actionButton("Delete", async () => { await api("DELETE", `/admin/prices/${price.id}`); await pricesView(main); }, `Delete the ${price.model} price? Recorded usage keeps its cost.`)]))),
  );
}

export async function tokensView(main: HTMLElement): Promise<void> {
  const tokens = await get<Page<Token>>("/admin/tokens?limit=100");
  const role = h("select", { name: "role" }, h("option", { value: "billing" }, "billing (read-only)"), h("option", { value: "admin" }, "admin"));
  clear(main);
  main.append(
    h("h1", {}, "Admin tokens"),
    section("New token", form("token-create", "New admin token", [field("Token name", input("name", { required: true })), field("Role", role)], "Create token", async (data) => {
      const created = await post<Token & { token: string }>("/admin/tokens", { name: text(data, "name"), role: text(data, "role") });
      await tokensView(main);
      main.querySelector("#token-secret")?.append(shownOnce(`New ${created.role} token`, created.token));
    }), h("div", { id: "token-secret" })),
    section("Tokens", table("token-list", "Admin tokens", ["name", "role", "tenant", "prefix", "state", ""], tokens.data.map((token) => [token.name, token.role, token.tenant_id ?? "–",
      h("code", {}, `${token.prefix}…`), token.revoked_at ? "revoked" : "active",
      token.revoked_at ? null : actionButton("Revoke", async () => { await post(`/admin/tokens/${token.id}/revoke`); await tokensView(main); }, `Revoke ${token.name}?`)]))),
  );
}

interface Audit {
  created_at: string;
  actor_id: string;
  actor_role: string | null;
  action: string;
  target_type: string;
  target_id: string;
  tenant_id: string | null;
  after: Record<string, unknown> | null;
}

export async function auditView(main: HTMLElement): Promise<void> {
  const entries = await get<Page<Audit>>(`/admin/audit${query({ limit: 100 })}`);
  clear(main);
  main.append(
    h("h1", {}, "Audit log"),
    section("Changes, newest first", table("audit-list", "Audit log", ["when", "actor", "action", "target", "tenant", "after"], entries.data.map((entry) => [
      f.when(entry.created_at), `${entry.actor_id}${entry.actor_role ? ` (${entry.actor_role})` : ""}`, entry.action, `${entry.target_type} ${entry.target_id}`,
      entry.tenant_id ?? "–", h("code", { class: "json" }, entry.after ? JSON.stringify(entry.after) : "")]))),
  );
}
