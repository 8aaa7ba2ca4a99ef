// The limit fields of plans, tenants and keys, as the admin API takes them (tenantgate/tenants/limit_fields.py).
// Empty means "not set at this level" (null): a key inherits its tenant's, a tenant its plan's. Values are sent as
// typed, so a limit the server refuses comes back as its own message on the form, naming the field.
import { field } from "./dom";
import { input, numberOrNull, text } from "./ui";

export interface RateLimits {
  rpm: number | null;
  tpm: number | null;
  rpd: number | null;
  max_concurrency: number | null;
  allowed_models: string[] | null;
}

export interface Quotas {
  monthly_token_quota: number | null;
  monthly_budget_usd: string | number | null;
  batch_queue_tokens: number | null;
  fair_share_weight: number | null;
}

const RATE_FIELDS: [keyof RateLimits, string][] = [
  ["rpm", "Requests per minute"],
  ["tpm", "Tokens per minute"],
  ["rpd", "Requests per day"],
  ["max_concurrency", "Requests in flight at once"],
];

const QUOTA_FIELDS: [keyof Quotas, string][] = [
  ["monthly_token_quota", "Monthly token quota"],
  ["batch_queue_tokens", "Batch queue tokens (per model)"],
  ["fair_share_weight", "Fair-share weight"],
];

const shown = (value: unknown): string => (value === null || value === undefined ? "" : String(value));

/** rpm, tpm, rpd, concurrency and allowed models; `inherits` says what an empty field means ("the plan's"). */
export function rateFields(current: Partial<RateLimits> | null, inherits: string): HTMLElement[] {
  const fields = RATE_FIELDS.map(([name, label]) => field(label, input(name, { type: "number", step: "any", value: shown(current?.[name]) }), `empty: ${inherits}`));
  const models = input("allowed_models", { value: (current?.allowed_models ?? []).join(", "), placeholder: "gpt-4o-mini, gpt-4o" });
  fields.push(field("Allowed models", models, `comma-separated; empty: ${inherits === "no limit" ? "every model" : inherits}`));
  return fields;
}

export function rateValues(data: FormData): RateLimits {
  const models = text(data, "allowed_models").split(/[\s,]+/).filter(Boolean);
  return {
    rpm: numberOrNull(data, "rpm"),
    tpm: numberOrNull(data, "tpm"),
    rpd: numberOrNull(data, "rpd"),
    max_concurrency: numberOrNull(data, "max_concurrency"),
    allowed_models: models.length ? models : null,
  };
}

/** Monthly token quota and budget, batch queue tokens, fair-share weight. */
export function quotaFields(current: Partial<Quotas> | null, inherits: string): HTMLElement[] {
  const fields = QUOTA_FIELDS.map(([name, label]) => field(label, input(name, { type: "number", step: "any", value: shown(current?.[name]) }), `empty: ${inherits}`));
  fields.splice(1, 0, field("Monthly budget (USD)", input("monthly_budget_usd", { inputmode: "decimal", value: shown(current?.monthly_budget_usd) }), `empty: ${inherits}`));
  return fields;
}

export function quotaValues(data: FormData): Quotas {
  const budget = text(data, "monthly_budget_usd");
  return {
    monthly_token_quota: numberOrNull(data, "monthly_token_quota"),
    monthly_budget_usd: budget === "" ? null : budget,
    batch_queue_tokens: numberOrNull(data, "batch_queue_tokens"),
    fair_share_weight: numberOrNull(data, "fair_share_weight"),
  };
}

/** An expiry field in UTC, as the console shows every time (the API takes a time without offset as UTC). */
export function expiryField(current: string | null, hint: string): HTMLElement {
  const value = current ? new Date(current).toISOString().slice(0, 16) : "";
  return field("Expires at (UTC)", input("expires_at", { type: "datetime-local", value }), hint);
}

export function expiryValue(data: FormData): string | null {
  const value = text(data, "expires_at");
  return value === "" ? null : value;
}
