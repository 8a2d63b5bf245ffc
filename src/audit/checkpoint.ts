// Signed checkpoints: an Ed25519 signature over (stream, seq, hash) of a chain head vouches for every record up to
// it, so that someone holding only the public key can tell a forged or re-hashed chain from the real one.

import { createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { sha256Hex, type AuditEvent } from './record.js';

/** Domain separation: a checkpoint signature can never be mistaken for a signature over anything else. */
export const CHECKPOINT_CONTEXT = 'pgwarden-audit-v1';

const GENPKEY_HINT = 'openssl genpkey -algorithm ed25519 -out audit.key';

export class AuditKeyError extends Error {
  readonly code = 'PGW_AUDIT_KEY';
}

// Messages name the source and what is wrong, never the key material (OpenSSL's own messages are left out too).
function keyFailure(source: string, e: unknown, expected: string): AuditKeyError {
  const code = (e as { code?: string }).code ?? '';
  if (code === 'ENOENT' || code === 'EACCES' || code === 'EISDIR') {
    return new AuditKeyError(`cannot read ${source}: ${code}`);
  }
  if (code === 'ERR_MISSING_PASSPHRASE') {
    return new AuditKeyError(
      `${source} is encrypted; pgwarden needs an unencrypted PEM key (protect the file instead)`,
    );
  }
  return new AuditKeyError(`${source} is not ${expected}`);
}

function requireEd25519(key: KeyObject, source: string): KeyObject {
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new AuditKeyError(
      `${source} holds an ${key.asymmetricKeyType ?? 'unknown'} key; audit checkpoints need an Ed25519 key (${GENPKEY_HINT})`,
    );
  }
  return key;
}

/** The Ed25519 private key that signs checkpoints, from PEM text (PKCS#8, as `openssl genpkey` writes it). */
export function loadSigningKeyFromPem(pem: string | Buffer, source = 'the audit signing key'): KeyObject {
  // OpenSSL reports a missing passphrase under different codes across versions; the PEM header is unambiguous.
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(pem.toString())) {
    throw keyFailure(source, { code: 'ERR_MISSING_PASSPHRASE' }, '');
  }
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: 'pem' });
  } catch (e) {
    throw keyFailure(source, e, `a PEM private key (${GENPKEY_HINT})`);
  }
  return requireEd25519(key, source);
}

/** The Ed25519 private key that signs checkpoints, from a PEM file. */
export function loadSigningKey(pemPath: string): KeyObject {
  const source = `audit signing key ${pemPath}`;
  let pem: Buffer;
  try {
    pem = readFileSync(pemPath);
  } catch (e) {
    throw keyFailure(source, e, 'readable');
  }
  return loadSigningKeyFromPem(pem, source);
}

/**
 * The Ed25519 public key that verifies checkpoints, from PEM text: SPKI (`openssl pkey -in audit.key -pubout`);
 * a private key PEM is accepted too, its public half is used.
 */
export function loadVerifyKeyFromPem(pem: string | Buffer, source = 'the audit public key'): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: pem, format: 'pem' });
  } catch (e) {
    throw keyFailure(source, e, 'a PEM public key (openssl pkey -in audit.key -pubout -out audit.pub)');
  }
  return requireEd25519(key, source);
}

const keyIds = new WeakMap<KeyObject, string>();

/** SHA-256 (hex) of the public key in SPKI DER: `openssl pkey -pubin -in audit.pub -outform DER | sha256sum`. */
export function keyId(key: KeyObject): string {
  let id = keyIds.get(key);
  if (id === undefined) {
    const pub = key.type === 'private' ? createPublicKey(key) : key;
    id = sha256Hex(pub.export({ type: 'spki', format: 'der' }));
    keyIds.set(key, id);
  }
  return id;
}

/** The exact bytes a checkpoint signs. */
export function checkpointMessage(stream: string, uptoSeq: number, uptoHash: string): Buffer {
  return Buffer.from(`${CHECKPOINT_CONTEXT}\n${stream}\n${uptoSeq}\n${uptoHash}`, 'utf8');
}

export function signCheckpoint(stream: string, uptoSeq: number, uptoHash: string, key: KeyObject): string {
  return sign(null, checkpointMessage(stream, uptoSeq, uptoHash), key).toString('base64');
}

export function verifyCheckpointSignature(
  stream: string,
  uptoSeq: number,
  uptoHash: string,
  sigBase64: string,
  publicKey: KeyObject,
): boolean {
  const sig = Buffer.from(sigBase64, 'base64');
  if (sig.length !== 64) return false;
  return verify(null, checkpointMessage(stream, uptoSeq, uptoHash), publicKey, sig);
}

/**
 * The checkpoint record for a chain head: append it right after the record it names (upto_seq = chain.seq,
 * upto_hash = chain.lastHash), which AuditChain.appendCheckpoint does.
 */
export function checkpointEvent(
  stream: string,
  uptoSeq: number,
  uptoHash: string,
  key: KeyObject,
): AuditEvent {
  return {
    event: 'checkpoint',
    session: null,
    identity: null,
    database: null,
    data: {
      upto_seq: uptoSeq,
      upto_hash: uptoHash,
      key_id: keyId(key),
      sig: signCheckpoint(stream, uptoSeq, uptoHash, key),
    },
  };
}
