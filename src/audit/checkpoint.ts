/**
 * Audit checkpoints: the sealer's signed statements about which rows exist, in which order, with
 * which content. Two models in one:
 * - AWS CloudTrail digest files: each names the log entries it covers with their hashes, chains the
 *   previous digest, and is signed with a key kept outside the log's store, so a deleted or edited
 *   entry, and a deleted digest, are found by recomputing (CloudTrail "digest file structure",
 *   `validate-logs`);
 * - C2SP checkpoints (`tlog-checkpoint.md`): a signed note of an origin line, a tree size and an
 *   RFC 6962 Merkle root over the leaves.
 *
 * The signed body is text, one `name value` line each, in this order:
 *
 *     gatehouse.audit.checkpoint.v1
 *     seq 12
 *     epoch 1 floor 0
 *     horizon 845
 *     last 844 457            (txid of the last row sealed, `-` for a pre-0009 row, then its id)
 *     count 20
 *     ids 438-455,457,456     (the rows, in sealing order; runs of consecutive ids)
 *     invalid 457             (rows whose MAC did not verify when sealed, or `-`)
 *     root <hex>              (RFC 6962 root over the rows' leaf hashes, in that order)
 *     prev <hex or genesis>   (the previous checkpoint's digest)
 *     sealed_at 2026-01-02T03:04:05.678Z
 *     key <key id>
 *
 * `digest` is SHA-256 of the body (hex); `signature` is Ed25519 (RFC 8032) over the body
 * (base64url), by the key whose fingerprint `key` names. The leaves themselves are stored with the
 * checkpoint; the root commits to them.
 */
import { createHash, sign, verify, type KeyObject } from 'node:crypto';
import type { AuditKeys } from './audit-keys.ts';

export const CHECKPOINT_LINE_TYPE = 'gatehouse.audit.checkpoint';
const ORIGIN = 'gatehouse.audit.checkpoint.v1';
export const GENESIS = 'genesis';
/** The most rows one checkpoint seals (the sealer loops for more). */
export const MAX_CHECKPOINT_ROWS = 10_000;

/** What a checkpoint says, without its leaves, digest and signature. */
export interface CheckpointBody {
  seq: bigint;
  /** Starts at 1; a new epoch begins when the transaction-id counter went backwards (see sealer.ts). */
  epoch: number;
  /** This epoch seals only rows with a greater id (0 in epoch 1). */
  floorId: bigint;
  /** pg_snapshot_xmin of the sealing transaction: no row below it can still appear. */
  horizon: bigint;
  /** Where sealing stands after this checkpoint: the last row's txid (null: a pre-0009 row, or none yet) and id. */
  lastTxid: bigint | null;
  lastId: bigint;
  /** The rows sealed, in sealing order. */
  ids: bigint[];
  /** Rows among them whose MAC did not verify when sealed: forged rows, kept on the record. */
  invalid: bigint[];
  /** RFC 6962 root (hex) over the rows' leaf hashes. */
  root: string;
  /** The previous checkpoint's digest, or {@link GENESIS}. */
  prevDigest: string;
  sealedAt: Date;
  keyId: string;
}

export interface Checkpoint extends CheckpointBody {
  /** The rows' leaf hashes, 32 bytes each, in `ids` order (not part of the signed body: `root` commits to them). */
  leaves: Buffer[];
  digest: string;
  signature: string;
}

/** "3-7,9,8" → [3n,4n,5n,6n,7n,9n,8n]: runs of consecutive ascending ids, in order. */
export function encodeIds(ids: readonly bigint[]): string {
  const parts: string[] = [];
  let start: bigint | undefined;
  let end: bigint | undefined;
  const flush = () => {
    if (start === undefined || end === undefined) return;
    parts.push(start === end ? String(start) : `${start}-${end}`);
  };
  for (const id of ids) {
    if (end !== undefined && id === end + 1n) end = id;
    else {
      flush();
      start = end = id;
    }
  }
  flush();
  return parts.length ? parts.join(',') : '-';
}

/** The runs of {@link encodeIds} as [from, to] pairs, without expanding them; throws on a malformed list. */
export function idRuns(text: string): Array<[bigint, bigint]> {
  if (text === '-' || text === '') return [];
  return text.split(',').map((part) => {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!m) throw new Error(`malformed id list near "${part}"`);
    const from = BigInt(m[1]!);
    const to = m[2] === undefined ? from : BigInt(m[2]);
    if (to < from) throw new Error(`malformed id range "${part}"`);
    return [from, to];
  });
}

/** The inverse of {@link encodeIds}; throws on a malformed list or one of more than `max` ids (a stored list is not trusted). */
export function decodeIds(text: string, max = MAX_CHECKPOINT_ROWS): bigint[] {
  const out: bigint[] = [];
  for (const [from, to] of idRuns(text)) {
    if (BigInt(out.length) + (to - from) >= BigInt(max)) throw new Error(`the id list holds more than ${max} ids`);
    for (let id = from; id <= to; id++) out.push(id);
  }
  return out;
}

/** The signed text of a checkpoint. */
export function renderBody(b: CheckpointBody): string {
  return [
    ORIGIN,
    `seq ${b.seq}`,
    `epoch ${b.epoch} floor ${b.floorId}`,
    `horizon ${b.horizon}`,
    `last ${b.lastTxid ?? '-'} ${b.lastId}`,
    `count ${b.ids.length}`,
    `ids ${encodeIds(b.ids)}`,
    `invalid ${b.invalid.length ? b.invalid.join(',') : '-'}`,
    `root ${b.root}`,
    `prev ${b.prevDigest}`,
    `sealed_at ${b.sealedAt.toISOString()}`,
    `key ${b.keyId}`,
    '',
  ].join('\n');
}

export function digestOf(body: CheckpointBody): string {
  return createHash('sha256').update(renderBody(body), 'utf8').digest('hex');
}

/** Digest and signature for a body, under the current signing key. */
export function signBody(keys: AuditKeys, body: CheckpointBody): { digest: string; signature: string } {
  const text = Buffer.from(renderBody(body), 'utf8');
  return { digest: createHash('sha256').update(text).digest('hex'), signature: sign(null, text, keys.signer.privateKey).toString('base64url') };
}

/** What checking a checkpoint's digest and signature found. */
export type SignatureCheck = 'valid' | 'bad-digest' | 'bad-signature' | 'unknown-key';

/** Recomputes the digest from the fields and verifies the signature under the key `keyId` names (or `publicKey`). */
export function checkSignature(keys: AuditKeys, cp: Pick<Checkpoint, keyof CheckpointBody | 'digest' | 'signature'>, publicKey?: KeyObject): SignatureCheck {
  const text = Buffer.from(renderBody(cp), 'utf8');
  if (createHash('sha256').update(text).digest('hex') !== cp.digest) return 'bad-digest';
  const key = publicKey ?? keys.verifiers.get(cp.keyId);
  if (!key) return 'unknown-key';
  try {
    return verify(null, text, key, Buffer.from(cp.signature, 'base64url')) ? 'valid' : 'bad-signature';
  } catch {
    return 'bad-signature';
  }
}

/** A checkpoint as one JSON line for the audit sink, or an export (`gatehouse audit checkpoints`). */
export function checkpointLine(cp: Checkpoint, publicKeyRaw?: string): Record<string, unknown> {
  return {
    type: CHECKPOINT_LINE_TYPE,
    seq: String(cp.seq),
    epoch: cp.epoch,
    floor_id: String(cp.floorId),
    horizon: String(cp.horizon),
    last_txid: cp.lastTxid === null ? null : String(cp.lastTxid),
    last_id: String(cp.lastId),
    count: cp.ids.length,
    ids: encodeIds(cp.ids),
    invalid: cp.invalid.map(String),
    root: cp.root,
    prev_digest: cp.prevDigest,
    sealed_at: cp.sealedAt.toISOString(),
    key_id: cp.keyId,
    digest: cp.digest,
    signature: cp.signature,
    ...(publicKeyRaw ? { public_key: publicKeyRaw } : {}),
  };
}

/** A checkpoint line read back (from the sink's file or an export); undefined when it is not one. */
export function parseCheckpointLine(value: unknown): (Omit<Checkpoint, 'leaves'> & { publicKey?: string }) | undefined {
  if (!value || typeof value !== 'object') return undefined;
  const v = value as Record<string, unknown>;
  if (v.type !== CHECKPOINT_LINE_TYPE) return undefined;
  const str = (x: unknown) => (typeof x === 'string' ? x : undefined);
  const seq = str(v.seq);
  const floor = str(v.floor_id);
  const horizon = str(v.horizon);
  const lastId = str(v.last_id);
  const ids = str(v.ids);
  const sealedAt = str(v.sealed_at);
  const digest = str(v.digest);
  const signature = str(v.signature);
  const root = str(v.root);
  const prev = str(v.prev_digest);
  const keyId = str(v.key_id);
  const digits = (x: string | undefined) => x !== undefined && /^\d+$/.test(x);
  if (!digits(seq) || !digits(floor) || !digits(horizon) || !digits(lastId) || ids === undefined || !sealedAt || !digest || !signature || !root || !prev || !keyId) return undefined;
  if (typeof v.epoch !== 'number' || !Array.isArray(v.invalid) || !(v.last_txid === null || digits(str(v.last_txid)))) return undefined;
  let decoded: bigint[];
  try {
    decoded = decodeIds(ids);
  } catch {
    return undefined;
  }
  return {
    seq: BigInt(seq!),
    epoch: v.epoch,
    floorId: BigInt(floor!),
    horizon: BigInt(horizon!),
    lastTxid: v.last_txid === null ? null : BigInt(v.last_txid as string),
    lastId: BigInt(lastId!),
    ids: decoded,
    invalid: (v.invalid as unknown[]).filter((x): x is string => typeof x === 'string' && /^\d+$/.test(x)).map(BigInt),
    root,
    prevDigest: prev,
    sealedAt: new Date(sealedAt),
    keyId,
    digest,
    signature,
    ...(typeof v.public_key === 'string' ? { publicKey: v.public_key } : {}),
  };
}
