/**
 * Driving the admin console like a browser: sign in (with the pre-session CSRF token), keep the
 * session cookie, read each page's CSRF token, post forms from the console's own origin.
 */
import type { TestApp } from './app.ts';
import { browse, CookieJar } from './oauth.ts';

export const ADMIN_EMAIL = 'admin@example.com';
export const ADMIN_PASSWORD = 'a long admin password';

export function csrfOf(html: string): string {
  const token = /name="csrf" value="([^"]*)"/.exec(html)?.[1];
  if (!token) throw new Error(`no CSRF token on the page: ${html.slice(0, 300)}`);
  return token;
}

export interface AdminBrowser {
  jar: CookieJar;
  get(path: string): Promise<Response>;
  /** Posts a form with this page's CSRF token unless `csrf` is given (use '' to leave it out). */
  post(path: string, fields?: Record<string, string | string[]>, options?: { csrf?: string; headers?: Record<string, string> }): Promise<Response>;
  csrf: string;
}

export async function createAdmin(app: TestApp, email = ADMIN_EMAIL, password = ADMIN_PASSWORD) {
  return app.accounts.create(email, password, 'admin');
}

export function formBody(fields: Record<string, string | string[]>): URLSearchParams {
  const body = new URLSearchParams();
  for (const [k, v] of Object.entries(fields)) for (const value of [v].flat()) body.append(k, value);
  return body;
}

/** Signs in at the admin console; returns a browser holding the session. */
export async function signInAdmin(app: TestApp, email = ADMIN_EMAIL, password = ADMIN_PASSWORD): Promise<AdminBrowser> {
  const jar = new CookieJar();
  const page = await browse(jar, `${app.adminUrl}/sign-in`);
  const response = await browse(jar, `${app.adminUrl}/sign-in`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: app.adminUrl },
    body: formBody({ csrf: csrfOf(await page.text()), email, password }),
  });
  if (response.status !== 303) throw new Error(`admin sign-in failed: ${response.status}`);
  const pending = await browse(jar, `${app.adminUrl}/pending`);
  const browser: AdminBrowser = {
    jar,
    csrf: csrfOf(await pending.text()),
    get: (path) => browse(jar, `${app.adminUrl}${path}`),
    post: (path, fields = {}, options = {}) => {
      const csrf = options.csrf ?? browser.csrf;
      return browse(jar, `${app.adminUrl}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', origin: app.adminUrl, ...options.headers },
        body: formBody(csrf === '' ? fields : { ...fields, csrf }),
      });
    },
  };
  return browser;
}
