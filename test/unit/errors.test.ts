// The error registry stays honest: every entry is well-formed, used somewhere in src/, and becomes a valid
// ErrorResponse.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ERRORS, pgwError, type ErrorCode } from '../../src/core/errors.js';
import { decodeErrorFields } from '../../src/protocol/decode.js';
import { errorResponse } from '../../src/protocol/writer.js';

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? sources(p) : p.endsWith('.ts') ? [p] : [];
  });
}

describe('error registry', () => {
  const codes = Object.keys(ERRORS) as ErrorCode[];
  const src = sources(join(import.meta.dirname, '../../src'))
    .filter((p) => !p.endsWith('core/errors.ts'))
    .map((p) => readFileSync(p, 'utf8'))
    .join('\n');

  it.each(codes)('%s is well-formed and used', (code) => {
    const spec = ERRORS[code];
    expect(spec.sqlstate).toMatch(/^[0-9A-Z]{5}$/);
    expect(['FATAL', 'ERROR']).toContain(spec.severity);
    expect(spec.message.length).toBeGreaterThan(10);
    expect(code).toMatch(/^PGW_ERR_[A-Z_]+$/);
    expect(src.includes(`'${code}'`), `${code} is never raised in src/`).toBe(true);
  });

  it('fills placeholders and becomes an ErrorResponse with S, V, C, M (and H when there is a hint)', () => {
    const e = pgwError('PGW_ERR_AUTH_FAILED', 'alice');
    expect(e.message).toBe('password authentication failed for user "alice"');
    const msg = errorResponse(e);
    expect(msg[0]).toBe(0x45);
    expect(msg.readInt32BE(1)).toBe(msg.length - 1);
    const fields = decodeErrorFields(msg);
    expect(Object.fromEntries(fields)).toEqual({
      S: 'FATAL',
      V: 'FATAL',
      C: '28P01',
      M: 'password authentication failed for user "alice"',
    });
    expect(decodeErrorFields(errorResponse(pgwError('PGW_ERR_TLS_REQUIRED'))).get('H')).toMatch(/sslmode/);
  });
});
