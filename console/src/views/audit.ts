// The audit log (admin role), narrowed by the admin API's own filters. Ids are shown as names where the console
// can read them (tenants, plans, keys, admin tokens); the id stays in the title, shown on hover. The tenant filter
// is picked by name and sent as the id the API takes.
import { get, query, type Page } from "../api";
import { clear, field, h } from "../dom";
import * as f from "../format";
import { named, type Kind } from "../names";
import { tenantPicker } from "../tenantpicker";
import { form, input, pagedTable, section, text } from "../ui";
import { PAGE } from "./operator";

interface Audit {
  id: string;
  created_at: string;
  actor_id: string;
  actor_role: string | null;
  action: string;
  target_type: string;
  target_id: string;
  tenant_id: string | null;
  before: Record<string, unknown> | null;
  after: Record<string, unknown> | null;
}

// The audit log's filters, as the admin API takes them (GET /admin/audit); kept while the view is left and back.
const auditFilters: Record<string, string> = { action: "", target_type: "", tenant_id: "", actor_id: "" };
const TARGETS = ["plan", "tenant", "key", "admin_token", "price_override", "upstream_key"];
const NAMED: string[] = ["tenant", "plan", "key", "admin_token"];

/** Actors are admin token ids (adm_…), or bootstrap, cli, system, oidc:<id>:<name>: only token ids need a name. */
function actor(entry: Audit): HTMLElement {
  const role = entry.actor_role ? ` (${entry.actor_role})` : "";
  const who = entry.actor_id.startsWith("adm_") ? named("admin_token", entry.actor_id) : h("span", {}, entry.actor_id);
  return h("span", {}, who, role);
}

/** A created or deleted thing's name is in the entry itself (deleted plans cannot be read back); else it is asked. */
function target(entry: Audit): HTMLElement {
  const own = entry.after?.name ?? entry.before?.name;
  const label = entry.target_type.replaceAll("_", " ");
  if (typeof own === "string") return h("span", {}, `${label} `, h("span", { class: "named", title: entry.target_id }, own));
  if (NAMED.includes(entry.target_type)) return h("span", {}, `${label} `, named(entry.target_type as Kind, entry.target_id));
  return h("span", {}, `${label} `, h("code", {}, entry.target_id));
}

export async function auditView(main: HTMLElement): Promise<void> {
  const listing = h("div", { id: "audit-listing" });
  const showList = async () => {
    const path = (after?: string) => `/admin/audit${query({ limit: PAGE, ...auditFilters, after })}`;
    listing.replaceChildren(pagedTable("audit-list", "Audit log", ["when", "actor", "action", "target", "tenant", "after"], await get<Page<Audit>>(path()),
      (after) => get<Page<Audit>>(path(after)), (entry) => [f.when(entry.created_at), actor(entry), entry.action,
        target(entry), entry.tenant_id ? named("tenant", entry.tenant_id) : "–", h("code", { class: "json" }, entry.after ? JSON.stringify(entry.after) : "")],
      "no change matches").element);
  };
  const targetType = h("select", { name: "target_type" }, h("option", { value: "" }, "any"), ...TARGETS.map((name) => h("option", { value: name, selected: auditFilters.target_type === name }, name.replaceAll("_", " "))));
  clear(main);
  main.append(
    h("h1", {}, "Audit log"),
    section("Changes, newest first",
      form("audit-filter", "Filter the audit log", [
        field("Action", input("action", { value: auditFilters.action, placeholder: "key.revoke, or key." }), "“key.” matches every key action"),
        field("Target", targetType),
        ...tenantPicker("any tenant", "about this tenant or its keys", auditFilters.tenant_id),
        field("Actor", input("actor_id", { value: auditFilters.actor_id, placeholder: "token id, bootstrap, cli" })),
      ], "Filter", async (data) => {
        for (const name of Object.keys(auditFilters)) auditFilters[name] = text(data, name);
        await showList();
      }),
      listing),
  );
  await showList();
}
