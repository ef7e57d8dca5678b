/**
 * Device cookies (OWASP "Slow down online guessing attacks with device cookies"): after a
 * successful sign-in the browser gets a cookie, one per account, that names a random device id and
 * is signed (HMAC-SHA-256) with the current cookie key. Presented with that account's email, it
 * gives the device its own sign-in budget, so wrong passwords from elsewhere do not lock the owner
 * out (sign-in-throttle.ts, docs/security.md I-36).
 *
 * The cookie carries no authority: it never signs anybody in, only changes which counter an
 * attempt is charged to. Does not check that the account exists, and is not revoked by a password
 * change (it ends with its lifetime, or when the cookie keys are all rotated away).
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/** How long a device stays known without signing in again (each sign-in renews it). */
export const DEVICE_COOKIE_SECONDS = 90 * 86400;

export interface IssuedDeviceCookie {
  /** The cookie's name, without any `__Host-` prefix. */
  name: string;
  value: string;
  maxAgeMs: number;
}

export interface DeviceCookies {
  /** The cookie name for this account (lower-cased email), without any `__Host-` prefix. */
  nameFor(email: string): string;
  /** The device id in `value` if it is a valid, unexpired device cookie for this account. */
  verify(email: string, value: string | undefined): string | undefined;
  /** A fresh cookie for this account, keeping `device` when the browser already had one. */
  issue(email: string, device?: string): IssuedDeviceCookie;
}

/**
 * `keys`: the cookie keys, current first (earlier ones still verify after a rotation). `purpose`
 * separates the console's cookies from the user sign-in's.
 */
export function createDeviceCookies(options: { keys: readonly string[]; purpose: 'user' | 'admin'; now?: () => number }): DeviceCookies {
  const now = options.now ?? Date.now;
  if (options.keys.length === 0) throw new Error('device cookies need at least one cookie key');
  const mac = (key: string, email: string, device: string, expires: number) =>
    createHmac('sha256', key).update(`gatehouse-device-cookie:v1|${options.purpose}|${email}|${device}|${expires}`).digest();
  const nameFor = (email: string) => `gh_device_${createHash('sha256').update(`${options.purpose}|${email}`).digest('base64url').slice(0, 16)}`;
  return {
    nameFor,
    verify(email, value) {
      if (!value || value.length > 200) return undefined;
      const match = /^([A-Za-z0-9_-]{22})\.(\d{1,12})\.([A-Za-z0-9_-]{43})$/.exec(value);
      if (!match) return undefined;
      const [, device, expiresText, given] = match as unknown as [string, string, string, string];
      const expires = Number(expiresText);
      if (expires * 1000 <= now()) return undefined;
      const givenMac = Buffer.from(given, 'base64url');
      for (const key of options.keys) {
        const expected = mac(key, email, device, expires);
        if (expected.length === givenMac.length && timingSafeEqual(expected, givenMac)) return device;
      }
      return undefined;
    },
    issue(email, device = randomBytes(16).toString('base64url')) {
      const expires = Math.floor(now() / 1000) + DEVICE_COOKIE_SECONDS;
      const signature = mac(options.keys[0]!, email, device, expires).toString('base64url');
      return { name: nameFor(email), value: `${device}.${expires}.${signature}`, maxAgeMs: DEVICE_COOKIE_SECONDS * 1000 };
    },
  };
}
