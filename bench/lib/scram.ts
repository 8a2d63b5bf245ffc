// SCRAM-SHA-256 verifiers (RFC 5802/7677, PostgreSQL's pg_authid format) made with node:crypto, so a bench
// user's proxy-side secret never needs a database round trip.
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';

/**
 * `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, all base64, as PostgreSQL stores it.
 * The password is used as UTF-8 without SASLprep: callers pass ASCII passwords.
 */
export function scramVerifier(password: string, iterations = 4096, salt: Buffer = randomBytes(16)): string {
  const salted = pbkdf2Sync(password, salt, iterations, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = createHmac('sha256', salted).update('Server Key').digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}
