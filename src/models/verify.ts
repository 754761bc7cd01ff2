import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';

/** How a downloaded file is checked: sha256 of the content for LFS files, the git blob sha1 for the rest. */
export interface Checksum {
  algorithm: 'sha256' | 'git-sha1';
  expected: string;
}

export function checksumFor(file: { size: number; oid: string; lfs?: { oid: string } }, linkedEtag?: string): Checksum {
  if (file.lfs) return { algorithm: 'sha256', expected: file.lfs.oid.toLowerCase() };
  // A listing without LFS details: the X-Linked-Etag of an LFS file is the sha256 of its content.
  if (linkedEtag && /^[0-9a-f]{64}$/i.test(linkedEtag)) return { algorithm: 'sha256', expected: linkedEtag.toLowerCase() };
  return { algorithm: 'git-sha1', expected: file.oid.toLowerCase() };
}

/** A running hash for `checksum`; git blob ids hash a "blob <size>\0" header before the content. */
export function startHash(checksum: Checksum, size: number): Hash {
  if (checksum.algorithm === 'sha256') return createHash('sha256');
  return createHash('sha1').update(`blob ${size}\0`);
}

export async function hashFilePrefix(hash: Hash, path: string, bytes: number): Promise<void> {
  if (bytes === 0) return;
  for await (const chunk of createReadStream(path, { start: 0, end: bytes - 1 })) hash.update(chunk as Buffer);
}

export async function fileMatches(path: string, size: number, checksum: Checksum): Promise<boolean> {
  const hash = startHash(checksum, size);
  await hashFilePrefix(hash, path, size);
  return hash.digest('hex') === checksum.expected;
}
