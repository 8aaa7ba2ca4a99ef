// A tenant's API keys in the operator's view: create with limits and expiry (the plaintext shown once), edit a
// key's limits afterwards (PATCH /admin/keys/{id}), rotate with a chosen grace period, revoke. Also what the tenant portal shares: a key's
// state as people read it (a rotated key "expiring" through its grace period) and the limits-left table.
import { get, post, api, query, type Page } from "../api";
import { field, h, table, toast } from "../dom";
import * as f from "../format";
import { expiryField, expiryValue, rateFields, rateValues, type RateLimits } from "../limits";
import { actionButton, form, input, pagedTable, section, shownOnce, text } from "../ui";

export interface Key extends Partial<RateLimits> {
  id: string;
  tenant_id: string;
  name: string;
  prefix: string;
  status: string;
  expires_at: string | null;
  last_used_at: string | null;
  created_at: string;
}
interface Created extends Key {
  key: string;
}
interface Rotated extends Created {
  previous: Key;
}

const GRACE_UNITS: [string, number][] = [["minutes", 60], ["hours", 3600], ["days", 86400]];

const PAGE = 50;

/**
 * The status column: an active key with an expiry is "expiring" and says until when, so the old key of a rotation
 * (same name as the new one) reads as on its way out during the grace period, not as one more active key.
 */
export function keyState(key: Key, keys: Key[] = []): HTMLElement {
  if (key.status !== "active" || !key.expires_at) return h("span", { class: `state ${key.status}` }, key.status);
  const replaced = keys.some((other) => other.id !== key.id && other.name === key.name && other.created_at > key.created_at);
  return h("span", { class: "state expiring", title: key.expires_at },
    replaced ? "rotated, works until " : "expiring ", h("time", { datetime: key.expires_at }, f.when(key.expires_at)));
}

export function keysSection(tenant: { id: string; name: string }, keys: Page<Key>, reload: () => Promise<void>): HTMLElement {
  const keysPath = (after?: string) => `/admin/tenants/${tenant.id}/keys${query({ limit: PAGE, after })}`;
  const limits = h("div", { id: "key-limits" });
  const seen = [...keys.data];
  return section("API keys",
    form("key-create", "New API key", [field("Key name", input("name", { value: "default", maxlength: "200" })),
      ...rateFields(null, "the tenant's"), expiryField(null, "empty: never")], "Create key", async (data) => {
      const created = await post<Created>(`/admin/tenants/${tenant.id}/keys`, { name: text(data, "name") || "default", ...rateValues(data), expires_at: expiryValue(data) });
      await reload();
      document.getElementById("key-secret")?.append(shownOnce(`New key ${created.name}`, created.key));
    }),
    h("div", { id: "key-secret" }),
    pagedTable("key-list", `Keys of ${tenant.name}, newest first`, ["name", "prefix", "status", "rpm", "last used", ""], keys,
      async (after) => {
        const page = await get<Page<Key>>(keysPath(after));
        seen.push(...page.data);
        return page;
      },
      (key) => [key.name, h("code", {}, `${key.prefix}…`), keyState(key, seen), key.rpm ?? "tenant", f.when(key.last_used_at),
        h("span", { class: "actions" },
          actionButton("Limits", async () => showKey(limits, key, reload), undefined, `Limits of key ${key.name} (${key.prefix}…)`),
          key.status === "active" ? actionButton("Rotate", async () => rotateForm(limits, key, `/admin/keys/${key.id}/rotate`, reload), undefined, `Rotate key ${key.name} (${key.prefix}…)`) : null,
          key.status === "active" ? actionButton("Revoke", async () => { await post(`/admin/keys/${key.id}/revoke`); await reload(); },
            `Revoke key ${key.name}? It is refused everywhere within a second.`, `Revoke key ${key.name} (${key.prefix}…)`) : null),
      ]).element,
    limits);
}

/**
 * Rotating a key asks first how long the old key keeps working (the admin API takes 0 to 30 days; an hour unless
 * changed). A grace the API refuses is shown under the form, as it answered. Shared with the tenant portal.
 */
export function rotateForm(where: HTMLElement, key: Key, path: string, reload: () => Promise<void>): void {
  const amount = input("grace", { type: "number", min: "0", step: "any", value: "1", required: true });
  const unit = h("select", { name: "grace_unit" }, ...GRACE_UNITS.map(([name, seconds]) => h("option", { value: String(seconds), selected: name === "hours" }, name)));
  where.replaceChildren(h("h3", { id: "key-rotate-heading" }, `Rotate key ${key.name} (${key.prefix}…)`),
    form("key-rotate", `Rotate key ${key.name}`, [field("Old key keeps working for", amount, "0: it is refused at once; at most 30 days"), field("Unit", unit)],
      "Rotate key", async (data) => {
        const rotated = await post<Rotated>(path, { grace_seconds: Number(text(data, "grace")) * Number(text(data, "grace_unit")) });
        await reload();
        const until = rotated.previous.expires_at;
        const old = until && new Date(until).getTime() > Date.now() ? `the old one works until ${f.when(until)}` : "the old one is refused from now on";
        document.getElementById("key-secret")?.append(shownOnce(`Rotated key ${rotated.name} (${old})`, rotated.key));
      }));
  where.scrollIntoView({ block: "nearest" });
  amount.focus();
}

/** What the key may still do now, and a form for its own limits and expiry (empty: the tenant's). */
async function showKey(where: HTMLElement, key: Key, reload: () => Promise<void>): Promise<void> {
  const left = h("div");
  showLimits(left, await get(`/admin/keys/${key.id}/limits`));
  const edit = form("key-edit", `Limits and expiry of key ${key.name}`, [field("Key name", input("name", { value: key.name, maxlength: "200" })),
    ...rateFields(key, "the tenant's"), expiryField(key.expires_at, "empty: never")], "Save key", async (data) => {
    const saved = await api<Key>("PATCH", `/admin/keys/${key.id}`, { name: text(data, "name"), ...rateValues(data), expires_at: expiryValue(data) });
    await reload();
    const again = document.getElementById("key-limits");
    if (again) await showKey(again, saved, reload);
    toast(`Key ${saved.name} saved.`);
  });
  where.replaceChildren(h("h3", { id: "key-edit-heading" }, `Key ${key.name} (${key.prefix}…)`), left, edit);
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

export function fmt(value: unknown): string {
  if (value === null || value === undefined) return "–";
  return typeof value === "number" ? f.count(value) : String(value);
}

export function money(value: unknown): string {
  if (value === null || value === undefined || value === "") return "–";
  const amount = Number(value);
  return Number.isFinite(amount) ? f.usd(amount) : String(value);
}
