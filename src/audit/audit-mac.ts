/**
 * The per-row MAC (issue 14 §4): `<key id>.<nonce>.<tag>`, where the tag is HMAC-SHA256 (RFC 2104)
 * under the audit MAC key (audit-keys.ts) over the canonical serialisation of everything Gatehouse
 * writes in the row, and the nonce is 16 fresh random bytes. So:
 * - a row INSERTed with the database's credentials but without the key has no valid MAC;
 * - an edited field breaks its row's MAC;
 * - a copy of a row keeps the copied MAC, nonce included: duplicates are visible (and refused by
 *   the unique index on `mac`, migration 0009).
 *
 * What the MAC does not cover: `id`, `txid` and `occurred_at`, which the database stamps (the insert
 * trigger ignores what a writer sends). Those are covered once the row is sealed: the checkpoint's
 * leaf hash is over the whole row (sealer.ts).
 *
 * Canonical form: a JSON array (RFC 8785, JSON Canonicalization Scheme: keys sorted by UTF-16 code
 * units, ECMAScript number formatting, no whitespace) of a version tag, the key id, the nonce, the
 * eight text fields in column order and `details`. `details` is jsonb, which reorders keys and
 * drops nothing JSON can say, so the same value comes back from the database as the writer had:
 * the writer canonicalises what `JSON.stringify` sends, the verifier what the database returns.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { AuditKeys } from './audit-keys.ts';

const VERSION = 'gatehouse.audit.mac.v1';

/** The fields a row's MAC covers, as stored (null for an absent value). */
export interface MacFields {
  event: string;
  actor: string | null;
  client_id: string | null;
  account_id: string | null;
  resource: string | null;
  source_ip: string | null;
  user_agent: string | null;
  request_id: string | null;
  details: unknown;
}

/**
 * RFC 8785 canonical JSON of a JSON value (after `JSON.stringify` semantics: `toJSON`, undefined
 * members dropped). Lone surrogates are replaced (U+FFFD), as the database stores them.
 */
export function canonicalJson(value: unknown): string {
  const plain = value === undefined ? null : (JSON.parse(JSON.stringify(value)) as unknown);
  return canonical(plain);
}

/** Lone UTF-16 surrogates, which UTF-8 (and so PostgreSQL's text) cannot hold. */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;
const toWellFormed = (s: string) => s.replace(LONE_SURROGATE, '\ufffd');

function canonical(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    return typeof value === 'string' ? JSON.stringify(toWellFormed(value)) : (JSON.stringify(value) ?? 'null');
  }
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  const object = value as Record<string, unknown>;
  const keys = Object.keys(object).sort();
  return `{${keys.map((k) => `${JSON.stringify(toWellFormed(k))}:${canonical(object[k])}`).join(',')}}`;
}

/** A text field as it is both stored and MAC'd: lone surrogates replaced (the database could not store them). */
export function wellFormed(value: string | null | undefined): string | null {
  return value === undefined || value === null ? null : toWellFormed(value);
}

function message(keyId: string, nonce: string, f: MacFields): string {
  return canonicalJson([VERSION, keyId, nonce, f.event, f.actor, f.client_id, f.account_id, f.resource, f.source_ip, f.user_agent, f.request_id, f.details ?? {}]);
}

function tag(key: Buffer, keyId: string, nonce: string, f: MacFields): Buffer {
  return createHmac('sha256', key).update(message(keyId, nonce, f), 'utf8').digest();
}

/** A fresh MAC for a row about to be written, under the current key. */
export function computeMac(keys: AuditKeys, fields: MacFields): string {
  const nonce = randomBytes(16).toString('base64url');
  return `${keys.mac.id}.${nonce}.${tag(keys.mac.key, keys.mac.id, nonce, fields).toString('base64url')}`;
}

/** What checking a stored MAC found. */
export type MacCheck =
  | { ok: true; keyId: string }
  | { ok: false; reason: 'missing' | 'malformed' | 'mismatch' }
  | { ok: false; reason: 'unknown-key'; keyId: string };

const MAC_FORMAT = /^([0-9a-f]{16})\.([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})$/;

/** Checks a stored MAC against the row's fields, under whichever configured key it names. */
export function checkMac(keys: AuditKeys, mac: string | null, fields: MacFields): MacCheck {
  if (mac === null || mac === '') return { ok: false, reason: 'missing' };
  const m = MAC_FORMAT.exec(mac);
  if (!m) return { ok: false, reason: 'malformed' };
  const [, keyId, nonce, stored] = m as unknown as [string, string, string, string];
  const key = keys.macKeys.get(keyId);
  if (!key) return { ok: false, reason: 'unknown-key', keyId };
  const expected = tag(key, keyId, nonce, fields);
  const given = Buffer.from(stored, 'base64url');
  return given.length === expected.length && timingSafeEqual(given, expected) ? { ok: true, keyId } : { ok: false, reason: 'mismatch' };
}

/** For people: why a MAC did not verify. */
export function describeMacFailure(check: Exclude<MacCheck, { ok: true }>): string {
  switch (check.reason) {
    case 'missing':
      return 'it has no MAC: Gatehouse did not write it (a row INSERTed into the table directly, or by a version older than migration 0009 during the upgrade)';
    case 'malformed':
      return 'its MAC is malformed: Gatehouse did not write it';
    case 'mismatch':
      return 'its MAC does not match its content: the row was edited, or forged';
    case 'unknown-key':
      return `its MAC names key ${check.keyId}, which neither GATEHOUSE_KEY_ENCRYPTION_KEY nor GATEHOUSE_PREVIOUS_KEY_ENCRYPTION_KEYS derives: forged, or written under a key-encryption key no longer configured`;
  }
}
