// PostgreSQL's legacy MD5 password response (AuthenticationMD5Password), for upstreams still configured with md5.
import { createHash } from 'node:crypto';

function md5Hex(...parts: Buffer[]): string {
  const h = createHash('md5');
  for (const p of parts) h.update(p);
  return h.digest('hex');
}

/**
 * The PasswordMessage payload answering AuthenticationMD5Password:
 * 'md5' + md5hex(md5hex(password + user) + salt), where the inner hex digest is what pg_authid stores
 * ('md5' + md5hex(password + user)) and salt is the 4 random bytes of the server's request.
 * Strings are UTF-8, as libpq sends them when client and server encodings are UTF-8.
 */
export function md5PasswordResponse(user: string, password: string, salt: Buffer): string {
  if (salt.length !== 4) throw new RangeError('MD5 password salt must be 4 bytes');
  const inner = md5Hex(Buffer.from(password, 'utf8'), Buffer.from(user, 'utf8'));
  return 'md5' + md5Hex(Buffer.from(inner, 'latin1'), salt);
}
