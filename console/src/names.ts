// Names for the ids the admin API answers with (ten_…, adm_…, key_…, plan ids), so a list can say "Acme" where
// it holds "ten_01…". Each id is asked for once per page load, and only when shown; an id that cannot be read
// (deleted, or not the caller's to see) stays an id. The id is always kept in the element's title.
import { get } from "./api";
import { h } from "./dom";

export type Kind = "tenant" | "plan" | "key" | "admin_token";

const PATHS: Record<Kind, (id: string) => string> = {
  tenant: (id) => `/admin/tenants/${encodeURIComponent(id)}`,
  plan: (id) => `/admin/plans/${encodeURIComponent(id)}`,
  key: (id) => `/admin/keys/${encodeURIComponent(id)}`,
  admin_token: (id) => `/admin/tokens/${encodeURIComponent(id)}`,
};

const known = new Map<string, Promise<string | null>>();

// A page of the audit log can hold 50 different ids: ask a few at a time, not 50 at once against the admin API's
// per-address budget.
const AT_ONCE = 4;
let running = 0;
const waiting: (() => void)[] = [];

async function limited<T>(work: () => Promise<T>): Promise<T> {
  if (running >= AT_ONCE) await new Promise<void>((go) => waiting.push(go)); // a finished lookup hands its slot on
  else running += 1;
  try {
    return await work();
  } finally {
    const next = waiting.shift();
    if (next) next();
    else running -= 1;
  }
}

/** Names already at hand (a list just loaded), so they are not asked for again. */
export function remember(kind: Kind, items: { id: string; name: string }[]): void {
  for (const item of items) known.set(`${kind}:${item.id}`, Promise.resolve(item.name));
}

export function nameOf(kind: Kind, id: string): Promise<string | null> {
  const cacheKey = `${kind}:${id}`;
  let found = known.get(cacheKey);
  if (!found) {
    found = limited(() => get<{ name?: string }>(PATHS[kind](id))).then((item) => item.name ?? null, () => null);
    known.set(cacheKey, found);
  }
  return found;
}

/** The id at once, replaced by its name when known; the id stays in the title (shown on hover). */
export function named(kind: Kind, id: string, prefix = ""): HTMLElement {
  const element = h("span", { class: "named", title: id, "data-id": id }, `${prefix}${id}`);
  void nameOf(kind, id).then((name) => {
    if (name) element.textContent = `${prefix}${name}`;
  });
  return element;
}
