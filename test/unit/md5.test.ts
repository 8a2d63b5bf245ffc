// MD5 password response: known answer computed independently with openssl, and node-postgres agreeing.
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { md5PasswordResponse } from '../../src/auth/md5.js';

const require = createRequire(import.meta.url);
const pgUtils = require('pg/lib/crypto/utils.js') as {
  postgresMd5PasswordHash(user: string, password: string, salt: Buffer): Promise<string>;
};

function opensslMd5(input: Buffer): string {
  return execFileSync('openssl', ['dgst', '-md5', '-r'], { input }).toString().split(' ')[0];
}

describe('md5PasswordResponse', () => {
  const salt = Buffer.from([1, 2, 3, 4]);

  it('matches md5(md5(password + user) + salt) computed by openssl', () => {
    const inner = opensslMd5(Buffer.from('postgrespostgres'));
    const expected = 'md5' + opensslMd5(Buffer.concat([Buffer.from(inner), salt]));
    expect(md5PasswordResponse('postgres', 'postgres', salt)).toBe(expected);
  });

  it('has the wire format PostgreSQL expects and a fixed known answer', () => {
    const response = md5PasswordResponse('postgres', 'postgres', salt);
    expect(response).toMatch(/^md5[0-9a-f]{32}$/);
    // md5('postgrespostgres') = 3175bce1d3201d16594cebf9d7eb3f9d, the pg_authid form of this password.
    expect(opensslMd5(Buffer.from('postgrespostgres'))).toBe('3175bce1d3201d16594cebf9d7eb3f9d');
    expect(response).toBe(RESPONSE_POSTGRES_01020304);
  });

  it('agrees with node-postgres, including non-ASCII user names and passwords', async () => {
    for (const [user, password] of [
      ['postgres', 'postgres'],
      ['ålice', 'pässwörd'],
      ['u', ''],
    ]) {
      expect(md5PasswordResponse(user, password, salt)).toBe(
        await pgUtils.postgresMd5PasswordHash(user, password, salt),
      );
    }
  });

  it('depends on the salt and refuses a salt that is not 4 bytes', () => {
    expect(md5PasswordResponse('a', 'b', salt)).not.toBe(
      md5PasswordResponse('a', 'b', Buffer.from([1, 2, 3, 5])),
    );
    expect(() => md5PasswordResponse('a', 'b', Buffer.from([1, 2, 3]))).toThrow(RangeError);
  });
});

// printf 'postgrespostgres' | openssl md5 -> inner; printf '%s\x01\x02\x03\x04' "$inner" | openssl md5
const RESPONSE_POSTGRES_01020304 = 'md568be9ed08db75f318087ab337aaea044';
