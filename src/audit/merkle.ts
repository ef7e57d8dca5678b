/**
 * Merkle tree hashes as Certificate Transparency defines them (RFC 6962 §2.1), the tree C2SP
 * checkpoints (`tlog-checkpoint.md`) commit to: a leaf is SHA-256(0x00 || data), an inner node
 * SHA-256(0x01 || left || right), the tree of n leaves splits at the largest power of two below n,
 * and the empty tree's hash is SHA-256 of nothing. The prefixes keep a leaf from passing for a node.
 */
import { createHash } from 'node:crypto';

const LEAF = Buffer.from([0x00]);
const NODE = Buffer.from([0x01]);

/** The leaf hash of `data` (32 bytes). */
export function leafHash(data: string | Buffer): Buffer {
  return createHash('sha256').update(LEAF).update(data).digest();
}

/** MTH(D[n]) over leaf hashes already computed, in order (32 bytes). */
export function merkleRoot(leaves: readonly Buffer[]): Buffer {
  if (leaves.length === 0) return createHash('sha256').digest();
  // Bottom-up: pairing neighbours level by level and carrying an odd last node up unchanged gives
  // the same tree as RFC 6962's top-down split at the largest power of two below n.
  let level: Buffer[] = [...leaves];
  while (level.length > 1) {
    const next: Buffer[] = [];
    for (let i = 0; i + 1 < level.length; i += 2) next.push(createHash('sha256').update(NODE).update(level[i]!).update(level[i + 1]!).digest());
    if (level.length % 2 === 1) next.push(level[level.length - 1]!);
    level = next;
  }
  return level[0]!;
}
