// The first thing that must work: psql-style clients log in through pgwarden and run a query.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PgwardenProcess } from '../harness/pgwarden.js';
import { pgClient, startProxy } from './support.js';

describe('smoke', () => {
  let proxy: PgwardenProcess;
  beforeAll(async () => {
    proxy = await startProxy();
  });
  afterAll(async () => {
    await proxy?.stop();
  });

  it('runs a query over TLS with SCRAM and a brokered upstream login', async () => {
    const client = await pgClient(proxy);
    const r = await client.query('select current_user as u, 1 + 1 as two');
    expect(r.rows).toEqual([{ u: 'app', two: 2 }]);
    await client.end();
  });
});
