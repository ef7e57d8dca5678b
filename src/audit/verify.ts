/**
 * `gatehouse audit verify`: recomputes everything the audit trail's integrity rests on, trusting
 * neither the database nor its credentials, only the keys derived from the key-encryption key
 * (audit-keys.ts) and, optionally, checkpoints kept elsewhere. Like CloudTrail's `validate-logs`
 * and SQL Server's `sp_verify_database_ledger`, it reports:
 *
 * (a) a row without a valid MAC (INSERTed with the database's credentials: forged), and rows that
 *     share one MAC (copies of a row);
 * (b) a sealed row whose content changed (its leaf hash no longer matches its checkpoint's, and
 *     usually its MAC no longer matches either);
 * (c) a sealed row that is gone, and a row that appeared inside an already sealed range;
 * (d) a checkpoint that does not verify: its digest, its signature, its leaves against its root, a
 *     gap in `seq`, a broken `prev` chain (so a table rewritten with recomputed hashes is caught:
 *     the signatures cannot be recomputed without the key);
 * (e) rows still unsealed after the sealing delay (sealing stalled: a long-running transaction
 *     holds the horizon back, or no instance seals);
 * (f) for rows written before migration 0009, the old hash chain (legacy-chain.ts);
 * and, given checkpoint lines from outside the database (the audit sink's file, or an export),
 * every one of them must be in the database with the same digest: a trail cut back together with
 * its checkpoints is caught there.
 *
 * What it cannot see: rows deleted before they were sealed (seconds, normally), unless the sink's
 * event lines are compared by hand; and anything an attacker who holds the key-encryption key does.
 *
 * Checkpoints signed under a key-encryption key that is no longer configured are accepted when a
 * later checkpoint, signed by a configured key, chains to them through digests that all recompute
 * (the sealer never chains onto a checkpoint it could not verify).
 */
import type { DB } from '../db/database.ts';
import { keyIdOfRaw, publicKeyFromRaw, type AuditKeys } from './audit-keys.ts';
import { checkMac, describeMacFailure, type MacCheck } from './audit-mac.ts';
import { compareSealOrder, isLegacy, macFieldsOf, rowLeaf, type AuditRow } from './audit-row.ts';
import { createAuditRepository, type StoredCheckpoint } from './audit.repository.ts';
import { GENESIS, checkSignature, checkpointLine, encodeIds, idRuns, parseCheckpointLine, type Checkpoint } from './checkpoint.ts';
import { verifyLegacyChain } from './legacy-chain.ts';
import { merkleRoot } from './merkle.ts';

export interface AuditProblem {
  subject: 'event' | 'checkpoint';
  /** The event's id, or the checkpoint's seq. */
  id: string;
  problem: string;
}

export interface AuditReport {
  /** Rows in audit_events. */
  events: number;
  /** Rows held by a checkpoint. */
  sealed: number;
  /** Rows not sealed yet (within the sealing delay, or reported). */
  unsealed: number;
  /** Rows written before migration 0009, verified by the old hash chain too. */
  legacy: number;
  checkpoints: number;
  /** The newest checkpoint. */
  head: { seq: string; digest: string; keyId: string; sealedAt: Date } | null;
  /** With checkpoint lines from outside the database: how many, and how many matched. */
  external?: { checkpoints: number; matched: number };
  /** Facts worth saying that are not tampering. */
  notes: string[];
  problems: AuditProblem[];
  /** Problems beyond `maxProblems`, counted but not listed. */
  omitted: number;
}

export interface VerifyOptions {
  /** Seconds after which a row in no checkpoint is reported (see {@link unsealedThreshold}). */
  unsealedAfter: number;
  /** Parsed JSON lines from outside the database; lines that are not checkpoints are ignored. */
  external?: unknown[];
  maxProblems?: number;
}

/**
 * How long a row may stay unsealed before `audit verify` reports it: five seal intervals, and at
 * least a minute (the sealer runs every GATEHOUSE_AUDIT_SEAL_INTERVAL on every instance).
 */
export function unsealedThreshold(sealIntervalSeconds: number): number {
  return Math.max(60, 5 * sealIntervalSeconds);
}

const PAGE = 5000;
const CHECKPOINT_PAGE = 100;

/** A checkpoint's id list as runs, with the checkpoint's seq, for coverage. */
interface Run {
  from: bigint;
  to: bigint;
  seq: bigint;
}

export async function verifyAuditTrail(db: DB, keys: AuditKeys, options: VerifyOptions): Promise<AuditReport> {
  const repo = createAuditRepository(db);
  const maxProblems = options.maxProblems ?? 50;
  const report: AuditReport = { events: 0, sealed: 0, unsealed: 0, legacy: 0, checkpoints: 0, head: null, notes: [], problems: [], omitted: 0 };
  const problem = (subject: AuditProblem['subject'], id: bigint | string, text: string) => {
    if (report.problems.length < maxProblems) report.problems.push({ subject, id: String(id), problem: text });
    else report.omitted++;
  };
  const macOf = (row: AuditRow): MacCheck | undefined => (isLegacy(row) && row.mac === null ? undefined : checkMac(keys, row.mac, macFieldsOf(row)));

  // ---- the checkpoints: chain, signatures, roots; and each one's rows -------------------------
  const runs: Run[] = [];
  const digests = new Map<bigint, string>();
  let previous: StoredCheckpoint | undefined;
  /** Checkpoints signed by an unconfigured key, waiting for a later verified one to chain to them. */
  let unvouched: StoredCheckpoint[] = [];
  let linked = true;
  let last: StoredCheckpoint | undefined;
  let vouchedByChain = 0;
  for (let after = -1n; ; ) {
    const page = await repo.checkpoints({ afterSeq: after, limit: CHECKPOINT_PAGE, withLeaves: true });
    for (const cp of page) {
      report.checkpoints++;
      last = cp;
      digests.set(cp.seq, cp.digest);
      const expectedSeq = (previous?.seq ?? 0n) + 1n;
      if (cp.seq !== expectedSeq) {
        problem('checkpoint', expectedSeq, `missing: the checkpoints from ${expectedSeq} to ${cp.seq - 1n} are gone (seq jumps from ${previous?.seq ?? 0n} to ${cp.seq}): they were deleted`);
        linked = false;
      } else if (cp.prevDigest !== (previous?.digest ?? GENESIS)) {
        problem('checkpoint', cp.seq, `its prev digest is not checkpoint ${previous?.seq ?? 'none'}'s digest: the chain of checkpoints is broken`);
        linked = false;
      }
      if (previous && (cp.epoch < previous.epoch || (cp.epoch === previous.epoch && (cp.floorId !== previous.floorId || cp.horizon < previous.horizon)))) {
        problem('checkpoint', cp.seq, `its epoch, floor or horizon goes back from checkpoint ${previous.seq}'s: it was not written by the sealer`);
      }
      const signature = checkSignature(keys, cp);
      if (signature === 'bad-digest') {
        problem('checkpoint', cp.seq, 'its digest does not match its content: the checkpoint was edited');
        linked = false;
      } else if (signature === 'bad-signature') {
        problem('checkpoint', cp.seq, `its signature does not verify under key ${cp.keyId}: it was forged, or edited and re-hashed`);
        linked = false;
      } else if (signature === 'unknown-key') {
        if (!linked) {
          for (const u of unvouched) problem('checkpoint', u.seq, `it is signed by key ${u.keyId}, which no configured key-encryption key derives, and the chain from it to a verifiable checkpoint is broken`);
          unvouched = [];
        }
        unvouched.push(cp);
        linked = true;
      } else {
        // Valid: it vouches for the unverifiable checkpoints it chains back to, if every link holds.
        if (linked) vouchedByChain += unvouched.length;
        else for (const u of unvouched) problem('checkpoint', u.seq, `it is signed by key ${u.keyId}, which no configured key-encryption key derives, and the chain from it to a verifiable checkpoint is broken`);
        unvouched = [];
        linked = true;
      }
      if (cp.unreadable) problem('checkpoint', cp.seq, `it cannot be read: ${cp.unreadable}`);
      else {
        if (cp.ids.length !== cp.leaves.length || cp.ids.length !== cp.rowCount) {
          problem('checkpoint', cp.seq, `it lists ${cp.ids.length} events but holds ${cp.leaves.length} leaf hashes and a count of ${cp.rowCount}: it was edited`);
        }
        if (merkleRoot(cp.leaves).toString('hex') !== cp.root) problem('checkpoint', cp.seq, 'its leaf hashes do not hash to its root: it was edited');
        for (const [from, to] of idRuns(encodeIds(cp.ids))) runs.push({ from, to, seq: cp.seq });
        await checkSealedRows(cp);
      }
      previous = cp;
    }
    if (page.length < CHECKPOINT_PAGE) break;
    after = page.at(-1)!.seq;
  }
  for (const u of unvouched) {
    problem('checkpoint', u.seq, `it is signed by key ${u.keyId}, which no configured key-encryption key derives, and no later checkpoint signed by a configured key chains to it`);
  }
  if (vouchedByChain) report.notes.push(`${vouchedByChain} checkpoint(s) are signed by a key-encryption key that is no longer configured; later checkpoints signed by the current key chain to them.`);
  if (last) report.head = { seq: String(last.seq), digest: last.digest, keyId: last.keyId, sealedAt: last.sealedAt };

  /** (b), (c) and the MACs of the rows a checkpoint sealed. */
  async function checkSealedRows(cp: StoredCheckpoint): Promise<void> {
    const found = new Map((await repo.rowsByIds(cp.ids)).map((r) => [r.id, r]));
    const flagged = new Set(cp.invalid);
    cp.ids.forEach((id, i) => {
      const row = found.get(id);
      if (!row) return problem('event', id, `removed: checkpoint ${cp.seq} sealed it, and it is no longer in the table`);
      const mac = macOf(row);
      const changed = !rowLeaf(row).equals(cp.leaves[i]!);
      if (flagged.has(id)) {
        if (mac?.ok) report.notes.push(`Event ${id} was sealed in checkpoint ${cp.seq} by an instance that could not verify its MAC; it verifies now.`);
        else problem('event', id, `forged: checkpoint ${cp.seq} recorded that its MAC did not verify when it was sealed (${mac ? describeMacFailure(mac) : 'it has no MAC'})`);
      } else if (changed) {
        const why = mac && !mac.ok && mac.reason !== 'unknown-key' ? describeMacFailure(mac) : 'its id, txid or occurred_at (which the MAC does not cover), or a pre-0009 row\'s content, changed';
        problem('event', id, `it was edited after checkpoint ${cp.seq} sealed it: its content no longer matches the checkpoint's leaf hash; ${why}`);
      } else if (mac && !mac.ok && mac.reason !== 'unknown-key') {
        // Same leaf, failing MAC: only a checkpoint that sealed a forged row without saying so.
        problem('event', id, `${describeMacFailure(mac)}, yet checkpoint ${cp.seq} sealed it as valid`);
      }
    });
  }

  // ---- (f) rows from before 0009: the old hash chain ------------------------------------------
  const legacy = await verifyLegacyChain(repo);
  report.legacy = legacy.rows;
  for (const p of legacy.problems) problem('event', p.id, p.problem);
  if (legacy.beforeChain) report.notes.push(`${legacy.beforeChain} event(s) were written before migration 0005 and never had a hash chain; ${report.checkpoints ? 'checkpoints cover them' : 'the first checkpoint will cover them'}.`);

  // ---- coverage: every row in exactly one checkpoint, or waiting for the next ----------------
  runs.sort((a, b) => (a.from < b.from ? -1 : a.from > b.from ? 1 : 0));
  for (let i = 1; i < runs.length; i++) {
    const a = runs[i - 1]!;
    const b = runs[i]!;
    if (b.from <= a.to) problem('event', b.from, `it is in two checkpoints (${a.seq} and ${b.seq}): a checkpoint was not written by the sealer`);
  }
  const position = last ? { txid: last.lastTxid, id: last.lastId } : undefined;
  let run = 0;
  const pending: Array<{ id: bigint; stale: boolean; early: boolean }> = [];
  const flushPending = async () => {
    const rows = new Map((await repo.rowsByIds(pending.map((p) => p.id))).map((r) => [r.id, r]));
    for (const p of pending) {
      const row = rows.get(p.id);
      if (!row) continue; // deleted meanwhile: nothing sealed it, nothing to say
      const mac = macOf(row);
      const forged = mac && !mac.ok ? `; ${describeMacFailure(mac)}` : '';
      if (p.early) problem('event', p.id, `it is in no checkpoint, yet it sorts before the last sealed event (checkpoint ${last!.seq}): it was added after its place was sealed${forged}`);
      else if (mac && !mac.ok) problem('event', p.id, `not sealed yet, and ${describeMacFailure(mac)}`);
      else if (p.stale) problem('event', p.id, `not sealed, more than ${options.unsealedAfter} s after it was written: sealing has stalled (a long-running transaction holds the horizon back, or no instance is sealing)`);
    }
    pending.length = 0;
  };
  for (let after = 0n; ; ) {
    const page = await repo.scan(after, PAGE, options.unsealedAfter);
    for (const row of page) {
      report.events++;
      while (run < runs.length && runs[run]!.to < row.id) run++;
      const covered = run < runs.length && runs[run]!.from <= row.id;
      if (covered) {
        report.sealed++;
        continue;
      }
      report.unsealed++;
      const early = last !== undefined && (row.id <= last.floorId || compareSealOrder(row, position!) <= 0);
      // A row from before 0009 waiting for the first checkpoint is not late: its old chain covers it.
      pending.push({ id: row.id, stale: row.stale && !isLegacy(row), early });
      if (pending.length >= PAGE) await flushPending();
    }
    if (page.length < PAGE) break;
    after = page.at(-1)!.id;
  }
  if (pending.length) await flushPending();

  // ---- (a) copies of a row ---------------------------------------------------------------------
  for (const ids of await repo.duplicateMacs(maxProblems)) {
    for (const id of ids.slice(1)) problem('event', id, `it has the same MAC (and nonce) as event ${ids[0]}: it is a copy of that row`);
  }

  // ---- checkpoints kept outside the database ---------------------------------------------------
  if (options.external) {
    let seen = 0;
    let matched = 0;
    const unknownKeys = new Set<string>();
    for (const value of options.external) {
      const line = parseCheckpointLine(value);
      if (!line) continue;
      seen++;
      const where = `checkpoint ${line.seq} in the file`;
      const span = line.ids.length ? ` (events ${describeIds(line.ids)}, sealed ${line.sealedAt.toISOString()})` : ` (sealed ${line.sealedAt.toISOString()})`;
      const own = line.publicKey && keyIdOfRaw(line.publicKey) === line.keyId ? publicKeyFromRaw(line.publicKey) : undefined;
      const signature = checkSignature(keys, line);
      if (signature === 'bad-digest') problem('checkpoint', line.seq, `${where}: its digest does not match its fields: the file was edited`);
      else if (signature === 'bad-signature') problem('checkpoint', line.seq, `${where}: its signature does not verify under key ${line.keyId}`);
      else if (signature === 'unknown-key') {
        unknownKeys.add(line.keyId);
        if (own && checkSignature(keys, line, own) !== 'valid') problem('checkpoint', line.seq, `${where}: its signature does not verify under the public key it names`);
      }
      const stored = digests.get(line.seq);
      if (stored === undefined) problem('checkpoint', line.seq, `${where}${span} is not in the database: the trail was cut back and its checkpoints deleted`);
      else if (stored !== line.digest) problem('checkpoint', line.seq, `the database's checkpoint ${line.seq} differs from the file's (digest ${stored.slice(0, 16)}… instead of ${line.digest.slice(0, 16)}…): it was rewritten`);
      else matched++;
    }
    report.external = { checkpoints: seen, matched };
    if (unknownKeys.size) report.notes.push(`The file has checkpoints signed by key(s) ${[...unknownKeys].join(', ')}, which no configured key-encryption key derives; they were compared by digest only.`);
  }
  return report;
}

/** "3–7, 9" for people, from ids in any order. */
export function describeIds(ids: readonly bigint[]): string {
  const sorted = [...ids].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return encodeIds(sorted).replaceAll('-', '–').replaceAll(',', ', ');
}

/** The checkpoints of the database as the lines the sink writes (`gatehouse audit checkpoints`). */
export async function* exportCheckpoints(db: DB, keys: AuditKeys): AsyncGenerator<Record<string, unknown>> {
  const repo = createAuditRepository(db);
  for (let after = -1n; ; ) {
    const page = await repo.checkpoints({ afterSeq: after, limit: CHECKPOINT_PAGE });
    for (const cp of page) {
      // The public key only when this deployment's key signed it (a line never names a key it cannot vouch for).
      yield checkpointLine(cp as Checkpoint, cp.keyId === keys.signer.keyId ? keys.signer.publicKeyRaw : undefined);
    }
    if (page.length < CHECKPOINT_PAGE) break;
    after = page.at(-1)!.seq;
  }
}
