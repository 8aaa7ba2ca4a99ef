// The tenant portal: one tenant's usage and costs (the usage API, which scopes a tenant session to its tenant on
// the server), its keys (create with the plaintext shown once, revoke, rotate with a chosen grace period) and what is left of its limits.
import { get, post, query, type Page } from "../api";
import { chart, COLORS, disposeCharts } from "../charts";
import { clear, field, h } from "../dom";
import * as f from "../format";
import { actionButton, form, input, pagedTable, section, shownOnce, text } from "../ui";
import { keyState, rotateForm, showLimits, type Key } from "./keys";

interface UsagePage {
  data: { start_time: number; results: { input_tokens: number; output_tokens: number; num_model_requests: number }[] }[];
}
interface CostPage {
  data: { start_time: number; results: { amount: { value: number } }[] }[];
}
interface OwnTenant {
  id: string;
  name: string;
  status: string;
  plan: { id: string; name: string } | null;
}

const keysPath = (after?: string) => `/console/api/portal/keys${query({ limit: 50, after })}`;

export async function portalView(main: HTMLElement): Promise<void> {
  const now = Math.floor(Date.now() / 1000);
  const [tenant, keys, usage, costs] = await Promise.all([
    get<OwnTenant>("/console/api/portal/tenant"),
    get<Page<Key>>(keysPath()),
    get<UsagePage>(`/v1/organization/usage/completions${query({ start_time: now - 167 * 3600, bucket_width: "1h", limit: 168 })}`),
    get<CostPage>(`/v1/organization/costs${query({ start_time: now - 30 * 86400, bucket_width: "1d", limit: 31 })}`),
  ]);
  disposeCharts();
  const hours = usage.data.map((bucket) => bucket.start_time);
  const sum = (bucket: UsagePage["data"][number], name: "input_tokens" | "output_tokens" | "num_model_requests") =>
    bucket.results.reduce((total, result) => total + result[name], 0);
  const days = costs.data.map((bucket) => bucket.start_time);
  const daily = costs.data.map((bucket) => bucket.results.reduce((total, result) => total + result.amount.value, 0));
  const monthCost = daily.reduce((a, b) => a + b, 0);
  const limits = h("div", { id: "key-limits" });
  // The panel under the keys shows the last thing asked for: a key's limits still loading when the user opens a
  // rotation (or another key's limits) are not drawn over it when they arrive.
  let asked = 0;
  const limitsOf = async (id: string) => {
    const mine = ++asked;
    const view = await get(`/console/api/portal/keys/${id}/limits`);
    if (mine === asked) showLimits(limits, view);
  };
  const secret = h("div", { id: "key-secret" });
  const reload = () => portalView(main);
  clear(main);
  main.append(
    h("h1", {}, tenant.name),
    h("p", { class: "muted" }, `Plan: ${tenant.plan?.name ?? "none"} · status ${tenant.status}`),
    h("div", { class: "cards" },
      h("div", { class: "card", id: "card-requests" }, h("h3", {}, "Requests, 7 days"), h("p", { class: "value" }, f.count(usage.data.reduce((t, b) => t + sum(b, "num_model_requests"), 0))), h("small", {}, "metered model requests")),
      h("div", { class: "card", id: "card-cost" }, h("h3", {}, "Cost, 30 days"), h("p", { class: "value" }, f.usd(monthCost)), h("small", {}, "from the usage ledger"))),
    h("div", { class: "charts" },
      chart("chart-tokens", "Tokens per hour, last 7 days", hours, [
        { label: "input", values: usage.data.map((b) => sum(b, "input_tokens")), color: COLORS.ok },
        { label: "output", values: usage.data.map((b) => sum(b, "output_tokens")), color: COLORS.p50 },
      ], f.count),
      chart("chart-cost", "Cost per day, last 30 days", days, [{ label: "USD", values: daily, color: COLORS.error }], f.usd)),
    section("Your API keys",
      form("key-create", "New API key", [field("Key name", input("name", { value: "default", maxlength: "200" }))], "Create key", async (data) => {
        const created = await post<Key & { key: string }>("/console/api/portal/keys", { name: text(data, "name") || "default" });
        await reload();
        document.getElementById("key-secret")?.append(shownOnce(`New key ${created.name}`, created.key));
      }),
      secret,
      pagedTable("key-list", "Your keys, newest first", ["name", "prefix", "status", "last used", ""], keys, (after) => get<Page<Key>>(keysPath(after)), (key) => [key.name, h("code", {}, `${key.prefix}…`),
        keyState(key, keys.data), f.when(key.last_used_at),
        h("span", { class: "actions" },
          actionButton("Limits", async () => limitsOf(key.id), undefined, `Limits of key ${key.name} (${key.prefix}…)`),
          key.status === "active" ? actionButton("Rotate", async () => { asked += 1; rotateForm(limits, key, `/console/api/portal/keys/${key.id}/rotate`, reload); }, undefined, `Rotate key ${key.name} (${key.prefix}…)`) : null,
          key.status === "active" ? actionButton("Revoke", async () => { await post(`/console/api/portal/keys/${key.id}/revoke`); await reload(); }, `Revoke key ${key.name}?`, `Revoke key ${key.name} (${key.prefix}…)`) : null)]).element,
      limits),
  );
  const first = keys.data.find((key) => key.status === "active");
  if (first) await limitsOf(first.id);
}
