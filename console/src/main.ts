// The console's shell: who is signed in, the sections their role may see, and the sign-in page. Which section
// a role sees is a convenience only: every call is checked on the server.
import "./style.css";
import { ApiError, api, get, post, setCsrf } from "./api";
import { disposeCharts } from "./charts";
import { clear, field, h } from "./dom";
import { billingView } from "./views/billing";
import { auditView } from "./views/audit";
import { plansView, tenantsView, tokensView } from "./views/operator";
import { pricesView } from "./views/prices";
import { portalView } from "./views/portal";
import { sreView, stopSre } from "./views/sre";
import { errorText, form, input } from "./ui";

interface Session {
  role: "admin" | "billing" | "tenant";
  subject: string;
  tenant_id: string | null;
  tenant_name: string | null;
  csrf_token: string;
}

type View = (main: HTMLElement) => Promise<void>;
const SECTIONS: { path: string; title: string; roles: string[]; view: View }[] = [
  { path: "sre", title: "Traffic", roles: ["admin", "billing"], view: sreView },
  { path: "tenants", title: "Tenants", roles: ["admin"], view: tenantsView },
  { path: "plans", title: "Plans", roles: ["admin"], view: plansView },
  { path: "prices", title: "Prices", roles: ["admin"], view: pricesView },
  { path: "billing", title: "Usage and costs", roles: ["admin", "billing"], view: billingView },
  { path: "tokens", title: "Admin tokens", roles: ["admin"], view: tokensView },
  { path: "audit", title: "Audit log", roles: ["admin"], view: auditView },
  { path: "portal", title: "My usage and keys", roles: ["tenant"], view: portalView },
];

const main = document.getElementById("main") as HTMLElement;
const nav = document.getElementById("nav") as HTMLElement;
const who = document.getElementById("who") as HTMLElement;
const signOut = document.getElementById("sign-out") as HTMLButtonElement;
let session: Session | null = null;

async function start(): Promise<void> {
  try {
    session = await get<Session>("/console/api/session");
  } catch (error) {
    if (error instanceof ApiError && (error.status === 401 || error.status === 400)) return signInPage();
    if (error instanceof ApiError && error.body.code === "tenant_suspended") return signInPage(SUSPENDED);
    main.replaceChildren(h("p", { class: "error", role: "alert" }, errorText(error)));
    return;
  }
  setCsrf(session.csrf_token);
  who.textContent = session.role === "tenant" ? `${session.tenant_name ?? session.tenant_id} (tenant)` : `${session.subject} (${session.role})`;
  signOut.hidden = false;
  clear(nav);
  for (const item of SECTIONS.filter((s) => s.roles.includes(session!.role))) {
    nav.append(h("a", { href: `#/${item.path}`, "data-path": item.path }, item.title));
  }
  await route();
}

async function route(): Promise<void> {
  if (!session) return;
  const allowed = SECTIONS.filter((s) => s.roles.includes(session!.role));
  // A view may keep its own state after "?" (#/sre?window=24h): the section is what comes before it.
  const wanted = location.hash.replace(/^#\/?/, "").split("?")[0];
  const current = allowed.find((s) => s.path === wanted) ?? allowed[0];
  if (current.path !== wanted) history.replaceState(null, "", `#/${current.path}`);
  nav.querySelectorAll("a").forEach((link) => {
    if (link.dataset.path === current.path) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  });
  stopSre();
  disposeCharts();
  document.title = `${current.title} · tenantgate console`;
  // Each visit renders into its own container. A view still loading when another is chosen (its reads answer
  // late) then writes into a container no longer on the page, never over the view now shown.
  const view = h("div", { class: "view" }, h("p", { class: "muted" }, "loading…"));
  main.replaceChildren(view);
  try {
    await current.view(view);
  } catch (error) {
    if (!view.isConnected) return; // left meanwhile: its error is not the shown view's
    if (error instanceof ApiError && error.status === 401) return signInPage("Your session has ended; sign in again.");
    if (error instanceof ApiError && error.body.code === "tenant_suspended") return signInPage(SUSPENDED);
    view.replaceChildren(h("p", { class: "error", role: "alert" }, errorText(error)));
  }
}

async function signInPage(notice?: string): Promise<void> {
  session = null;
  stopSre();
  clear(nav);
  who.textContent = "";
  signOut.hidden = true;
  let oidc = false;
  try {
    oidc = (await get<{ oidc: boolean }>("/console/api/config")).oidc;
  } catch {
    oidc = false;
  }
  if (session) return; // signed in meanwhile
  const params = new URLSearchParams(location.search);
  const code = params.get("sign_in_error");
  if (code !== null) history.replaceState(null, "", location.pathname); // shown once, not again on reload
  // Only the page's own words: the address is anyone's to write, so its text is never shown.
  const problem = code === null ? null : (SIGN_IN_PROBLEMS.get(code) ?? SIGN_IN_FAILED);
  const token = input("token", { type: "password", required: true, autocomplete: "current-password" });
  token.id = "token";
  main.replaceChildren(
    h("section", { class: "panel sign-in", id: "sign-in", "aria-labelledby": "sign-in-title" },
      h("h1", { id: "sign-in-title" }, "Sign in to the console"),
      notice ? h("p", { class: "warn" }, notice) : null,
      // Known before trying: a page that is not a secure context cannot keep the Secure session cookie.
      window.isSecureContext ? null : h("p", { class: "error", id: "insecure-origin" }, COOKIE_REFUSED),
      problem ? h("p", { class: "error", role: "alert", id: "sign-in-problem" }, problem) : null,
      oidc ? h("p", {}, h("a", { class: "button", id: "sso", href: "/console/oidc/login" }, "Sign in with single sign-on")) : null,
      form("sign-in-form", "Sign in with a token", [field("Admin, billing or tenant token", token)], "Sign in", async (data) => {
        await post("/console/api/session", { token: String(data.get("token") ?? "") });
        await confirmSession();
        await start();
      }),
      h("p", { class: "muted" }, "The session lives in a secure, HttpOnly cookie; the token itself is not kept in the browser.")),
  );
  token.focus();
}

const SUSPENDED = "This tenant is suspended. Contact the platform operator.";
const SIGN_IN_FAILED = "Single sign-on did not complete. Try again, or sign in with a token.";
/** What single sign-on's callback may send back (tenantgate/platform/console/oidc.py, REFUSALS), in words. */
const SIGN_IN_PROBLEMS = new Map<string, string>([
  ["provider_unreachable", "The identity provider could not be reached. Try again, or sign in with a token."],
  ["provider_refused", "The identity provider refused the sign-in."],
  ["flow_invalid", "This sign-in was not started here, was already used, or took too long; start again."],
  ["sign_in_failed", "The identity provider could not complete the sign-in."],
  ["no_role", "Your account is in no group that may use this console."],
  ["tenant_gone", "The tenant your group gives you access to does not exist."],
]);

const COOKIE_REFUSED = `The console needs HTTPS, or http://localhost / 127.0.0.1: the browser refused the secure session cookie (this page is ${location.origin}).`;

/**
 * The gateway accepted the token, so a session without a cookie means the browser would not keep it: the cookie
 * is `Secure` (`__Host-`), which browsers refuse over plain HTTP except on localhost. Said, not left to a
 * sign-in page that silently comes back.
 */
async function confirmSession(): Promise<void> {
  try {
    await get<Session>("/console/api/session");
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      throw new Error(COOKIE_REFUSED);
    }
    throw error;
  }
}

signOut.addEventListener("click", async () => {
  try {
    await api("DELETE", "/console/api/session");
  } finally {
    await signInPage();
  }
});
window.addEventListener("hashchange", () => void route());
void start();
