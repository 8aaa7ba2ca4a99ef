// A tenant chosen by name where the admin API takes its id (price overrides, the audit log's filter): a search
// field narrows a list of the first 50 live tenants (suspended ones too) whose name contains what is typed.
import { get, query, type Page } from "./api";
import { field, h } from "./dom";
import { nameOf, remember } from "./names";
import { input } from "./ui";

const PAGE = 50;

/**
 * `none` names the empty choice ("every tenant"); `current` is a tenant id chosen before, kept chosen (by its name)
 * even while the search shows other tenants, so a filter is not lost by looking for another.
 */
export function tenantPicker(none: string, hint: string, current = ""): HTMLElement[] {
  const choice = h("select", { name: "tenant_id" }, h("option", { value: "" }, none));
  const find = input("tenant_search", { type: "search", placeholder: "part of a tenant's name", autocomplete: "off" });
  const names = new Map<string, string>();
  let asked = 0;
  const option = (id: string, name: string, selected: boolean) => h("option", { value: id, title: id, selected }, name);
  const fill = async () => {
    const mine = ++asked;
    const page = await get<Page<{ id: string; name: string }>>(`/admin/tenants${query({ limit: PAGE, name: find.value.trim() })}`);
    if (mine !== asked) return; // a later search answered first
    remember("tenant", page.data);
    for (const tenant of page.data) names.set(tenant.id, tenant.name);
    const kept = choice.value;
    const listed = page.data.some((tenant) => tenant.id === kept);
    const keptName = kept && !listed ? (names.get(kept) ?? (await nameOf("tenant", kept)) ?? kept) : null;
    if (mine !== asked) return;
    choice.replaceChildren(option("", none, kept === ""), ...(keptName ? [option(kept, keptName, true)] : []),
      ...page.data.map((tenant) => option(tenant.id, tenant.name, tenant.id === kept)));
    choice.setAttribute("aria-description", page.has_more ? "the first 50 matches; type more of the name to narrow" : `${page.data.length} matching`);
  };
  if (current) {
    // Shown by its name as soon as that is known (often at once: a list read it before), not only once the
    // list of tenants below has loaded.
    const kept = option(current, current, true);
    choice.append(kept);
    void nameOf("tenant", current).then((name) => {
      if (name) kept.textContent = name;
    });
  }
  let timer: number | undefined;
  find.addEventListener("input", () => {
    window.clearTimeout(timer);
    timer = window.setTimeout(() => void fill(), 200);
  });
  void fill();
  return [field("Find a tenant", find, "narrows the choice of tenants"), field("Tenant", choice, hint)];
}
