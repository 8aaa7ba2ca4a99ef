// Price overrides (admin role): for everyone, for the tenants of one plan, or for one tenant, from a time on;
// with the cached-input price the admin API takes. Tenants are picked by name (tenantpicker.ts), plans from the list.
import { get, post, api, query, type Page } from "../api";
import { clear, field, h, toast } from "../dom";
import * as f from "../format";
import { named } from "../names";
import { actionButton, form, input, pagedTable, section, text } from "../ui";
import { tenantPicker } from "../tenantpicker";
import { PAGE, allPlans, planSelect } from "./operator";

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
  const [prices, plans] = await Promise.all([get<Page<Price>>(path()), allPlans()]);
  clear(main);
  main.append(
    h("h1", {}, "Price overrides"),
    section("New price", form("price-create", "New price override", [field("Model", input("model", { required: true }), "also prices its dated snapshots"),
      field("Input USD per 1M tokens", input("input_per_1m", { required: true, inputmode: "decimal" })),
      field("Cached input USD per 1M tokens", input("cached_input_per_1m", { inputmode: "decimal" }), "empty: the input price"),
      field("Output USD per 1M tokens", input("output_per_1m", { required: true, inputmode: "decimal" })),
      field("Plan", planSelect(plans, null, "every plan"), "only the tenants on this plan"), ...tenantPicker("every tenant", "at most one of tenant and plan; neither: everyone"),
      field("From (UTC)", input("effective_from", { type: "datetime-local" }), "now or later; empty: now")], "Save price", async (data) => {
      await post("/admin/prices", {
        model: text(data, "model"), input_per_1m: text(data, "input_per_1m"), output_per_1m: text(data, "output_per_1m"),
        cached_input_per_1m: text(data, "cached_input_per_1m") || null, plan_id: text(data, "plan_id") || null,
        tenant_id: text(data, "tenant_id") || null, effective_from: text(data, "effective_from") || null,
      });
      toast("Price saved.");
      await pricesView(main);
    })),
    section("Prices", pagedTable("price-list", "Price overrides, newest first", ["model", "scope", "input /1M", "cached input /1M", "output /1M", "from", ""], prices,
      (after) => get<Page<Price>>(path(after)),
      (price) => [price.model, scope(price), `$${price.input_per_1m}`, price.cached_input_per_1m === null ? "as input" : `$${price.cached_input_per_1m}`,
        `$${price.output_per_1m}`, f.when(price.effective_from),
        actionButton("Delete", async () => { await api("DELETE", `/admin/prices/${price.id}`); await pricesView(main); },
          `Delete the ${price.model} price? Recorded usage keeps its cost.`, `Delete the ${price.model} price`)]).element),
  );
}

function scope(price: Price): HTMLElement | string {
  if (price.tenant_id) return h("span", {}, "tenant ", named("tenant", price.tenant_id));
  if (price.plan_id) return h("span", {}, "plan ", named("plan", price.plan_id));
  return "everyone";
}
