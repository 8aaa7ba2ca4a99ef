// Billing (admin and billing roles, read-only): costs by tenant and model from the usage ledger, invoice
// summaries for a month, and the month's events as CSV (the billing exports of /admin/usage).
import { get, query } from "../api";
import { chart, COLORS, disposeCharts } from "../charts";
import { clear, field, h, table } from "../dom";
import * as f from "../format";
import { errorText, input, section } from "../ui";

interface InvoiceLine {
  model: string | null;
  requests: number;
  unpriced_requests?: number;
  input_tokens: number;
  output_tokens: number;
  cost_usd: string | null;
  cost_nano_usd: number;
}

/** A line's cost as the ledger has it: unpriced usage is said, never shown as $0. */
function cost(line: InvoiceLine): string {
  if (line.cost_usd === null) return "unpriced";
  const unpriced = line.unpriced_requests ?? 0;
  return unpriced ? `${f.usd(Number(line.cost_usd))} + ${f.count(unpriced)} unpriced` : f.usd(Number(line.cost_usd));
}
interface Invoice {
  tenant_id: string;
  tenant_name: string | null;
  lines: InvoiceLine[];
  total: InvoiceLine;
}
interface CostPage {
  data: { start_time: number; results: { amount: { value: number }; project_id: string | null }[] }[];
}

function thisMonth(): string {
  return new Date().toISOString().slice(0, 7);
}

export async function billingView(main: HTMLElement): Promise<void> {
  const month = input("period", { type: "month", value: thisMonth(), required: true });
  const tenant = input("tenant_id", { placeholder: "all tenants" });
  const body = h("div", { id: "billing-body" });
  const download = h("a", { id: "csv-download", class: "button", download: "" }, "Download CSV");
  const refresh = async () => {
    const period = month.value || thisMonth();
    download.setAttribute("href", `/admin/usage/export.csv${query({ period, tenant_id: tenant.value.trim() })}`);
    await renderBilling(body, period, tenant.value.trim());
  };
  month.addEventListener("change", () => void refresh());
  tenant.addEventListener("change", () => void refresh());
  clear(main);
  main.append(h("h1", {}, "Usage and costs"), h("div", { class: "controls" }, field("Month", month), field("Tenant id", tenant), download), body);
  await refresh();
}

async function renderBilling(body: HTMLElement, period: string, tenantId: string): Promise<void> {
  let invoices: { data: Invoice[] };
  let costs: CostPage;
  try {
    const now = Math.floor(Date.now() / 1000);
    [invoices, costs] = await Promise.all([
      get<{ data: Invoice[] }>(`/admin/usage/invoices${query({ period, tenant_id: tenantId })}`),
      get<CostPage>(`/v1/organization/costs${query({ start_time: now - 30 * 86400, bucket_width: "1d", limit: 31, project_ids: tenantId })}`),
    ]);
  } catch (error) {
    body.replaceChildren(h("p", { class: "error", role: "alert" }, errorText(error)));
    return;
  }
  disposeCharts();
  clear(body);
  const t = costs.data.map((bucket) => bucket.start_time);
  const daily = costs.data.map((bucket) => bucket.results.reduce((sum, result) => sum + result.amount.value, 0));
  const total = invoices.data.reduce((sum, invoice) => sum + invoice.total.cost_nano_usd, 0) / 1e9;
  body.append(
    h("div", { class: "cards" }, h("div", { class: "card", id: "card-month-cost" }, h("h3", {}, `Cost, ${period}`), h("p", { class: "value" }, f.usd(total)), h("small", {}, `${invoices.data.length} tenant(s) with usage`))),
    chart("chart-daily-cost", "Cost per day, last 30 days (costs API)", t, [{ label: "USD", values: daily, color: COLORS.error }], f.usd),
    section("Invoices", table("invoices", `Invoice summaries for ${period}`, ["tenant", "model", "requests", "input tokens", "output tokens", "cost"],
      invoices.data.flatMap((invoice) => [
        ...invoice.lines.map((line) => [invoice.tenant_name ?? invoice.tenant_id, line.model ?? "", f.count(line.requests), f.count(line.input_tokens), f.count(line.output_tokens), cost(line)]),
        [h("strong", {}, `${invoice.tenant_name ?? invoice.tenant_id} total`), "", f.count(invoice.total.requests), f.count(invoice.total.input_tokens), f.count(invoice.total.output_tokens), h("strong", {}, cost(invoice.total))],
      ]), "no usage in this period")),
  );
}
