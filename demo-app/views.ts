/**
 * HTML for the demo: a tiny tagged-template engine that escapes every
 * interpolated value unless it is already `Html`, plus one function per page.
 * Views know nothing of sessions or Express; the routes hand them plain data
 * and already-built URLs.
 */
import { createHash } from 'node:crypto';

/** Markup that is safe to insert as is (it came out of `html` or was escaped). */
export class Html {
  constructor(readonly value: string) {}
  toString(): string {
    return this.value;
  }
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Escapes text for HTML element content and quoted attribute values (OWASP XSS prevention, rule 1 and 2). */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => ESCAPES[char]);
}

function render(value: unknown): string {
  if (value instanceof Html) return value.value;
  if (Array.isArray(value)) return value.map(render).join('');
  if (value === undefined || value === null || value === false) return '';
  return escapeHtml(String(value));
}

/**
 * Builds markup: every `${value}` is escaped unless it is `Html` (or an array
 * of them); `undefined`, `null` and `false` render as nothing.
 * @example html`<p>Hello, ${username}</p>` // username '<b>' → '&lt;b&gt;'
 */
export function html(strings: TemplateStringsArray, ...values: unknown[]): Html {
  let out = strings[0];
  for (let i = 0; i < values.length; i++) out += render(values[i]) + strings[i + 1];
  return new Html(out);
}

const STYLESHEET = `
:root {
  --bg: #f4f6fb; --card: #fff; --text: #1d2433; --muted: #5c6780; --line: #dde2ee;
  --brand: #3153d4; --brand-dark: #2440a8; --ok: #157347; --ok-bg: #e3f4ea; --warn-bg: #fff4e0; --warn: #8a5300;
  --bad: #b42318; --bad-bg: #fdecea;
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--text);
  font: 16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
a { color: var(--brand); }
a:hover { color: var(--brand-dark); }
.bar { background: #1d2433; color: #fff; }
.bar-inner { max-width: 860px; margin: 0 auto; padding: 8px 20px; display: flex; align-items: center; gap: 8px 24px; min-height: 60px; flex-wrap: wrap; }
.brand { font-weight: 700; color: #fff; text-decoration: none; letter-spacing: .2px; }
.brand span { color: #9fb3ff; }
.links { display: flex; gap: 4px; flex: 1; }
.links a { color: #d5dcf0; text-decoration: none; padding: 6px 12px; border-radius: 6px; }
.links a:hover, .links a[aria-current="page"] { background: rgba(255,255,255,.12); color: #fff; }
.who { display: flex; align-items: center; gap: 12px; font-size: 14px; color: #d5dcf0; }
.who strong { color: #fff; }
.who form { margin: 0; }
.online { max-width: 860px; margin: 24px auto 0; padding: 0 20px; }
.online-pill { display: inline-flex; align-items: baseline; gap: 8px; background: var(--ok-bg); color: var(--ok);
  border: 1px solid #b7e1c7; border-radius: 999px; padding: 6px 16px; font-weight: 600; }
.online-pill b { font-size: 22px; }
.dot { width: 9px; height: 9px; border-radius: 50%; background: #22a55b; display: inline-block; align-self: center; }
main { max-width: 860px; margin: 16px auto 40px; padding: 0 20px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 12px; padding: 28px 32px;
  box-shadow: 0 1px 2px rgba(16,24,40,.04), 0 4px 16px rgba(16,24,40,.06); }
.card h1 { margin: 0 0 12px; font-size: 28px; line-height: 1.25; }
.card p { margin: 0 0 14px; }
.muted { color: var(--muted); }
.status { display: inline-block; border-radius: 6px; padding: 2px 10px; font-size: 14px; font-weight: 600; }
.status.in { background: var(--ok-bg); color: var(--ok); }
.status.out { background: #eceff5; color: var(--muted); }
.actions { display: flex; gap: 12px; flex-wrap: wrap; margin-top: 20px; align-items: center; }
.button, button { display: inline-block; font: inherit; font-weight: 600; cursor: pointer; text-decoration: none;
  border-radius: 8px; padding: 9px 18px; border: 1px solid var(--brand); background: var(--brand); color: #fff; }
.button:hover, button:hover { background: var(--brand-dark); color: #fff; }
.button.secondary { background: #fff; color: var(--brand); }
.button.secondary:hover { background: #eef1fc; color: var(--brand-dark); }
.bar button { padding: 5px 12px; font-size: 14px; background: transparent; border-color: rgba(255,255,255,.4); }
.bar button:hover { background: rgba(255,255,255,.12); }
.bar .button.small { padding: 5px 12px; font-size: 14px; }
label { display: block; font-weight: 600; margin-bottom: 6px; }
input[type=text] { font: inherit; width: 100%; max-width: 360px; padding: 9px 12px; border: 1px solid #c4cbdb;
  border-radius: 8px; background: #fff; }
input[type=text]:focus { outline: 2px solid var(--brand); outline-offset: 1px; border-color: var(--brand); }
.hint { font-size: 14px; color: var(--muted); margin-top: 6px; }
.counter { display: flex; align-items: center; gap: 20px; margin: 8px 0 4px; }
.counter p { margin: 0; }
.counter .number { font-size: 56px; font-weight: 800; line-height: 1; color: var(--brand); background: #eef1fc;
  border-radius: 14px; padding: 14px 22px; min-width: 104px; text-align: center; font-variant-numeric: tabular-nums; }
.notice { border-radius: 8px; padding: 10px 14px; margin: 0 0 18px; }
.notice.warn { background: var(--warn-bg); color: var(--warn); }
.notice.bad { background: var(--bad-bg); color: var(--bad); }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 20px 0 0; font-size: 14px; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; }
table.sessions { width: 100%; border-collapse: collapse; margin: 8px 0 0; font-size: 15px; }
table.sessions th { text-align: left; font-size: 13px; font-weight: 600; color: var(--muted); padding: 6px 10px;
  border-bottom: 1px solid var(--line); }
table.sessions td { padding: 10px; border-bottom: 1px solid var(--line); vertical-align: middle; }
table.sessions tr.current td { background: #f6f8ff; }
table.sessions form { margin: 0; }
.button.small, table.sessions button { padding: 5px 12px; font-size: 14px; }
button.danger { background: #fff; color: var(--bad); border-color: #e8b4ae; }
button.danger:hover { background: var(--bad-bg); color: var(--bad); }
.this-device { display: inline-block; margin-left: 8px; border-radius: 6px; padding: 1px 8px; font-size: 13px;
  font-weight: 600; background: var(--ok-bg); color: var(--ok); }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .92em; background: #eef1f7;
  padding: 1px 5px; border-radius: 4px; }
footer { max-width: 860px; margin: 0 auto 32px; padding: 0 20px; font-size: 13px; color: var(--muted); }
@media (max-width: 640px) {
  .who { order: 2; margin-left: auto; }
  .links { order: 3; flex-basis: 100%; margin: 0 -12px; }
  .card { padding: 20px; }
  .card h1 { font-size: 24px; }
}
`;

/**
 * The page's Content-Security-Policy: nothing may load or run but the one
 * inline stylesheet (allowed by its hash), and forms post only to us. The demo
 * ships no script at all, so an injected `<script>` could not run even if
 * escaping failed.
 */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  `style-src 'sha256-${createHash('sha256').update(STYLESHEET).digest('base64')}'`,
  "img-src 'self'",
  "form-action 'self'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** What every page shows around its card. */
export interface PageContext {
  /** The logged-in user, or undefined. */
  username: string | undefined;
  /** Live sessions right now (`manager.count()`); undefined when the store could not tell. */
  online: number | undefined;
  /** Builds a link that keeps the session (adds the id in URL-rewrite mode). */
  link: (path: string) => string;
  /** Which nav entry to highlight. */
  current?: 'home' | 'count' | 'login' | 'sessions';
  /** Shown in the footer: where the session id travels. */
  transport: 'cookie' | 'query';
}

function navLink(ctx: PageContext, path: string, label: string, name: PageContext['current']): Html {
  return html`<a href="${ctx.link(path)}"${ctx.current === name ? html` aria-current="page"` : ''}>${label}</a>`;
}

/** The whole document: nav bar, "Users online", the page's card, a footer. */
export function layout(ctx: PageContext, title: string, body: Html, status?: Html): string {
  const who = ctx.username === undefined
    ? html`<span class="status out" data-testid="who">Not logged in</span>
        <a class="button small" href="${ctx.link('/login')}">Log in</a>`
    : html`<span data-testid="who">Logged in as <strong>${ctx.username}</strong></span>
        <form method="post" action="${ctx.link('/logout')}"><button type="submit">Log out</button></form>`;
  const page = html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · session-manager demo</title>
<style>${new Html(STYLESHEET)}</style>
</head>
<body>
<header class="bar"><nav class="bar-inner" aria-label="Main">
  <a class="brand" href="${ctx.link('/')}">session-manager <span>demo</span></a>
  <div class="links">
    ${navLink(ctx, '/', 'Home', 'home')}
    ${navLink(ctx, '/count', 'Counter', 'count')}
    ${ctx.username === undefined ? '' : navLink(ctx, '/sessions', 'Your sessions', 'sessions')}
  </div>
  <div class="who">${who}</div>
</nav></header>
<div class="online"><span class="online-pill" data-testid="online"><span class="dot"></span>Users online: <b>${ctx.online ?? '–'}</b></span></div>
<main>
${status ?? ''}<section class="card">
${body}
</section>
</main>
<footer>Session id travels in ${ctx.transport === 'query' ? html`the URL (<code>?sid=</code>, for clients without cookies)` : html`an HttpOnly cookie`}.</footer>
</body>
</html>
`;
  return page.value;
}

export function homePage(ctx: PageContext): string {
  const body = ctx.username === undefined
    ? html`<h1>Welcome!</h1>
<p>You are <span class="status out">not logged in</span>. Log in with any name to start a session;
the counter works either way.</p>
<div class="actions">
  <a class="button" href="${ctx.link('/login')}">Log in</a>
  <a class="button secondary" href="${ctx.link('/count')}">Open the counter</a>
</div>`
    : html`<h1 data-testid="greeting">Hello, ${ctx.username}!</h1>
<p>You are <span class="status in">logged in</span>. Your session id was replaced when you logged in,
so an id someone planted before cannot ride along.</p>
<div class="actions">
  <a class="button" href="${ctx.link('/count')}">Open the counter</a>
</div>`;
  return layout({ ...ctx, current: 'home' }, 'Home', body);
}

export interface LoginPageData {
  /** The rejected input, shown again in the field. */
  value?: string;
  /** Why the last attempt was refused. */
  error?: string;
  maxLength: number;
}

export function loginPage(ctx: PageContext, data: LoginPageData): string {
  const error = data.error === undefined ? undefined : html`<p class="notice bad" role="alert">${data.error}</p>`;
  const body = html`<h1>Log in</h1>
${error}
<form method="post" action="${ctx.link('/login')}">
  <label for="username">Username</label>
  <input type="text" id="username" name="username" value="${data.value ?? ''}" maxlength="${data.maxLength}"
    autocomplete="username" required autofocus>
  <p class="hint">Any name of 1 to ${data.maxLength} characters. No password: this is a demo.</p>
  <div class="actions"><button type="submit">Log in</button>
  <a class="button secondary" href="${ctx.link('/')}">Cancel</a></div>
</form>`;
  return layout({ ...ctx, current: 'login' }, 'Log in', body);
}

export interface CountPageData {
  count: number;
  /** When this session's counter started (milliseconds since the epoch). */
  createdAt: number;
  /** Seconds after `createdAt` when the session gets replaced. */
  replaceAfterSeconds: number;
  /** True when this request replaced an old session. */
  replaced: boolean;
}

export function countPage(ctx: PageContext, data: CountPageData): string {
  const notice = data.replaced
    ? html`<p class="notice warn" role="status">Your session was older than ${data.replaceAfterSeconds} s, so it got a new id and the count started over.</p>`
    : undefined;
  const times = data.count === 1 ? 'time' : 'times';
  const body = html`<h1>Counter</h1>
${notice}
<div class="counter"><span class="number" data-testid="count">${data.count}</span>
<p>You have opened this page <strong>${data.count}</strong> ${times} in this session.</p></div>
<div class="actions">
  <a class="button" href="${ctx.link('/count')}">Count again</a>
  <a class="button secondary" href="${ctx.link('/')}">Home</a>
</div>
<dl class="facts">
  <dt>Counting since</dt><dd>${new Date(data.createdAt).toISOString().replace('T', ' ').slice(0, 19)} UTC</dd>
  <dt>Session renewed</dt><dd>every ${data.replaceAfterSeconds} s (new id, count reset)</dd>
</dl>`;
  return layout({ ...ctx, current: 'count' }, 'Counter', body);
}

/** An error page: 400, 404, 500, 503. */
export function errorPage(ctx: PageContext, status: number, title: string, message: string): string {
  const body = html`<h1>${title}</h1>
<p class="muted">Error ${status}</p>
<p>${message}</p>
<div class="actions"><a class="button" href="${ctx.link('/')}">Back home</a></div>`;
  return layout(ctx, title, body);
}

/** One row of "Your sessions": what `manager.listByUser()` says, flattened for the page. */
export interface SessionRow {
  /** The session's handle (non-secret): the per-session logout form names it. */
  handle: string;
  /** e.g. "Chrome on Linux". */
  device: string;
  createdAt: Date;
  expiresAt: Date;
  /** The session this page was requested with. */
  current: boolean;
}

export interface SessionsPageData {
  /** This user's sessions, the current one first. */
  sessions: SessionRow[];
  /** How many sessions the last "log out" ended, to confirm it. */
  ended?: number;
}

function utc(date: Date): Html {
  const text = date.toISOString().replace('T', ' ').slice(0, 16);
  return html`<time datetime="${date.toISOString()}">${text} UTC</time>`;
}

/** "Your sessions": every session of the logged-in user, with a log-out button for each other one. */
export function sessionsPage(ctx: PageContext, data: SessionsPageData): string {
  const others = data.sessions.filter((row) => !row.current).length;
  const rows = data.sessions.map((row) => html`<tr${row.current ? html` class="current"` : ''} data-testid="session">
  <td>${row.device}${row.current ? html`<span class="this-device" data-testid="this-device">this device</span>` : ''}</td>
  <td>${utc(row.createdAt)}</td>
  <td>${utc(row.expiresAt)}</td>
  <td>${row.current
    ? html`<span class="muted">—</span>`
    : html`<form method="post" action="${ctx.link(`/sessions/${encodeURIComponent(row.handle)}/logout`)}">
    <button type="submit" class="danger" aria-label="Log out ${row.device}, signed in ${row.createdAt.toISOString()}">Log out</button></form>`}</td>
</tr>`);
  const notice = data.ended === undefined
    ? undefined
    : html`<p class="notice warn" role="status" data-testid="ended">${data.ended === 1 ? '1 session was' : `${data.ended} sessions were`} logged out.</p>`;
  const body = html`<h1>Your sessions</h1>
${notice}
<p>Everywhere <strong>${ctx.username}</strong> is logged in right now (${data.sessions.length} ${data.sessions.length === 1 ? 'session' : 'sessions'}).
Log out a device you do not recognise, or all of them but this one.</p>
<table class="sessions">
<thead><tr><th scope="col">Device</th><th scope="col">Logged in</th><th scope="col">Expires if idle</th><th scope="col"><span class="muted">Action</span></th></tr></thead>
<tbody>
${rows}
</tbody>
</table>
<div class="actions">
${others === 0
    ? html`<p class="muted">No other sessions.</p>`
    : html`<form method="post" action="${ctx.link('/sessions/logout-others')}"><button type="submit">Log out all other sessions</button></form>`}
</div>`;
  return layout({ ...ctx, current: 'sessions' }, 'Your sessions', body);
}
