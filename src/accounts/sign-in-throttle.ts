/**
 * Sign-in throttling (admin console and user sign-in alike), following OWASP ASVS V2.2 and the
 * Authentication Cheat Sheet ("account lockout"), kept in PostgreSQL so every instance shares it
 * (docs/security.md I-36). Every attempt is *reserved* before its password is verified: a refused
 * reservation never runs argon2, so parallel requests get no more checks than the budget allows.
 *
 * An attempt without a device cookie counts against three keys, narrowest first:
 * - the account from this address: {@link ACCOUNT_ADDRESS} (five free, then 30 s doubling to an hour);
 * - the address: {@link ADDRESS} (twenty free, same schedule: one NAT may hide an office);
 * - the account from anywhere: {@link ACCOUNT} (ten free, then a short delay, 2 s doubling to
 *   a minute). This only slows a distributed attack; it never locks anybody out for long.
 * An attempt from a device that signed in to this account before (its signed device cookie,
 * device-cookies.ts) counts against that device alone: {@link DEVICE}, the same schedule as the
 * account from one address. Wrong passwords from elsewhere never lock the owner's device out.
 *
 * A success clears its narrow key (account and address, or device) and gives its reservation back
 * on the wider ones (one right password must not clear a spraying address).
 *
 * Does not decide what an address is: callers pass `ctx.ip` (X-Forwarded-For only counts under
 * GATEHOUSE_TRUST_PROXY).
 */
import type { DB } from '../db/database.ts';
import { backoffSeconds, createSignInAttemptsRepository, type AttemptBudget } from './sign-in-attempts.repository.ts';

/** The account from one address. */
export const ACCOUNT_ADDRESS: AttemptBudget = { free: 5, baseSeconds: 30, maxSeconds: 3600 };
/** One address, whatever the account. */
export const ADDRESS: AttemptBudget = { free: 20, baseSeconds: 30, maxSeconds: 3600 };
/** The account from anywhere but a known device: slows, never locks out for long. */
export const ACCOUNT: AttemptBudget = { free: 10, baseSeconds: 2, maxSeconds: 60 };
/** The account from a device that signed in to it before. */
export const DEVICE: AttemptBudget = ACCOUNT_ADDRESS;

export const FREE_FAILURES = ACCOUNT_ADDRESS.free;
export const FREE_FAILURES_PER_ADDRESS = ADDRESS.free;

/** The lockout that the `failures`-th failure starts, on the account-and-address schedule (or another `free`). */
export function lockoutSeconds(failures: number, free = FREE_FAILURES): number {
  return backoffSeconds(failures, { ...ACCOUNT_ADDRESS, free });
}

export interface SignInRequest {
  /** Which sign-in: the two never share counters. */
  scope: 'user' | 'admin';
  /** As typed, lower-cased. */
  email: string;
  /** The client's address (`ctx.ip`). */
  address: string;
  /** The device id from a valid device cookie for this account, if the browser sent one. */
  device?: string | undefined;
}

/** A reservation that went ahead: hand it to {@link SignInThrottle.succeeded} if the password was right. */
export interface SignInReservation {
  readonly narrow: string;
  readonly wide: ReadonlyArray<{ key: string; budget: AttemptBudget }>;
}

export type ReserveResult = { allowed: true; reservation: SignInReservation } | { allowed: false; retryAfter: number };

function keysFor(request: SignInRequest): Array<{ key: string; budget: AttemptBudget }> {
  const { scope, email, address, device } = request;
  if (device) return [{ key: `${scope}-device:${email}|${device}`, budget: DEVICE }];
  return [
    { key: `${scope}-account-ip:${email}|${address}`, budget: ACCOUNT_ADDRESS },
    { key: `${scope}-ip:${address}`, budget: ADDRESS },
    { key: `${scope}-account:${email}`, budget: ACCOUNT },
  ];
}

export function createSignInThrottle(db: DB) {
  const attempts = createSignInAttemptsRepository(db);
  return {
    /**
     * Counts this attempt before its password is checked. Refused (with the seconds to wait) when
     * any of its keys is waiting; nothing stays counted for a refused attempt.
     */
    async reserve(request: SignInRequest): Promise<ReserveResult> {
      const keys = keysFor(request);
      const reserved: typeof keys = [];
      for (const entry of keys) {
        if (await attempts.reserve(entry.key, entry.budget)) {
          reserved.push(entry);
          continue;
        }
        for (const done of reserved) await attempts.release(done.key, done.budget);
        return { allowed: false, retryAfter: Math.max(1, await attempts.retryAfter([entry.key])) };
      }
      return { allowed: true, reservation: { narrow: keys[0]!.key, wide: keys.slice(1) } };
    },

    /** The password was right: clears the narrow key, gives the reservation back on the wide ones. */
    async succeeded(reservation: SignInReservation): Promise<void> {
      await attempts.clear(reservation.narrow);
      for (const { key, budget } of reservation.wide) await attempts.release(key, budget);
    },

    /** Seconds until every one of these keys may be tried again (0: now). */
    retryAfter: (keys: string[]) => attempts.retryAfter(keys),
  };
}

export type SignInThrottle = ReturnType<typeof createSignInThrottle>;
