// The startup phase byte by byte over raw sockets: encryption negotiation, direct TLS, protocol versions, bad
// messages during SCRAM, and a FunctionCall after a hand-made login; each test asserts the backend message codes.
import type { TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PgwardenProcess } from '../harness/pgwarden.js';
import { CLIENTS, pgClient, startProxy } from './support.js';
import {
  authRequest,
  codes,
  connectDirectTls,
  connectPlain,
  connectTls,
  errorFields,
  frontend,
  negotiateProtocolVersion,
  saslMechanisms,
  scramLogin,
  upgradeTls,
  type Wire,
} from './wire.js';

const BOTH_MECHANISMS = ['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256'];

describe('raw protocol through pgwarden', () => {
  let proxy: PgwardenProcess;
  const open: Wire[] = [];
  const track = (w: Wire): Wire => (open.push(w), w);

  beforeAll(async () => {
    // One worker, so "the worker still serves" below is about the worker that saw the bad input. Plaintext is
    // allowed only so the version tests can skip TLS; every TLS path is still on.
    proxy = await startProxy({ workers: 1, allow_plaintext: true });
  });
  afterAll(async () => {
    for (const w of open) w.close();
    await proxy?.stop();
  });

  it('answers GSSENCRequest with the single byte N and then accepts an SSLRequest on the same connection', async () => {
    const wire = track(await connectPlain(proxy.port));
    wire.write(frontend.gssencRequest());
    expect((await wire.bytes(1)).toString('latin1')).toBe('N');
    // Anything pgwarden sent after the 'N' would arrive before the 'S' and fail here.
    wire.write(frontend.sslRequest());
    expect((await wire.bytes(1)).toString('latin1')).toBe('S');
    const secure = track(await upgradeTls(wire));
    secure.write(frontend.startup({ user: 'alice', database: 'ehr' }));
    expect(saslMechanisms((await secure.message())!)).toEqual(BOTH_MECHANISMS);
  });

  it('answers SSLRequest with S, completes a verified TLS handshake and offers SCRAM-SHA-256-PLUS', async () => {
    const wire = track(await connectTls(proxy.port));
    expect((wire.socket as TLSSocket).authorized).toBe(true);
    wire.write(frontend.startup({ user: 'alice', database: 'ehr' }));
    const reply = (await wire.message())!;
    expect(reply.code).toBe('R');
    expect(saslMechanisms(reply)).toEqual(BOTH_MECHANISMS);
  });

  it('refuses plaintext bytes sent in the same write as the SSLRequest with 08P01 and no TLS', async () => {
    const wire = track(await connectPlain(proxy.port));
    wire.write(Buffer.concat([frontend.sslRequest(), frontend.startup({ user: 'alice', database: 'ehr' })]));
    const messages = await wire.rest();
    // The first byte is the ErrorResponse's 'E': no 'S', so no handshake was ever offered.
    expect(codes(messages)).toEqual(['E']);
    expect(errorFields(messages[0])).toMatchObject({
      S: 'FATAL',
      C: '08P01',
      M: 'received unencrypted data after SSL request',
    });
    expect(wire.isClosed).toBe(true);
  });

  it('accepts PG17 direct TLS with ALPN "postgresql" and answers the StartupMessage with AuthenticationSASL', async () => {
    const wire = track(await connectDirectTls(proxy.port, ['postgresql']));
    expect((wire.socket as TLSSocket).alpnProtocol).toBe('postgresql');
    wire.write(frontend.startup({ user: 'alice', database: 'ehr' }));
    const reply = (await wire.message())!;
    expect(authRequest(reply).kind).toBe(10);
    expect(saslMechanisms(reply)).toEqual(BOTH_MECHANISMS);
  });

  it('closes a direct TLS connection that did not negotiate ALPN, without answering its StartupMessage', async () => {
    const wire = track(await connectDirectTls(proxy.port, undefined));
    wire.write(frontend.startup({ user: 'alice', database: 'ehr' }));
    expect(codes(await wire.rest())).toEqual([]);
    expect(wire.isClosed).toBe(true);
  });

  it('answers protocol 3.2 with a _pq_ option by NegotiateProtocolVersion (3.0, option listed), then SASL', async () => {
    const wire = track(await connectTls(proxy.port));
    wire.write(frontend.startup({ user: 'alice', database: 'ehr', '_pq_.test_option': 'on' }, (3 << 16) | 2));
    const v = (await wire.message())!;
    const r = (await wire.message())!;
    expect([v.code, r.code]).toEqual(['v', 'R']);
    expect(negotiateProtocolVersion(v)).toEqual({ newestMinor: 0, options: ['_pq_.test_option'] });
    expect(saslMechanisms(r)).toEqual(BOTH_MECHANISMS);
  });

  it('refuses a protocol 2.0 startup packet with FATAL 0A000', async () => {
    const wire = track(await connectPlain(proxy.port));
    wire.write(frontend.startupV2('ehr', 'alice'));
    const messages = await wire.rest();
    expect(codes(messages)).toEqual(['E']);
    expect(errorFields(messages[0])).toMatchObject({ S: 'FATAL', C: '0A000' });
    expect(errorFields(messages[0]).M).toContain('2.0');
  });

  it('refuses a replication startup with FATAL 0A000', async () => {
    const wire = track(await connectTls(proxy.port));
    wire.write(frontend.startup({ user: 'alice', database: 'ehr', replication: 'true' }));
    const messages = await wire.rest();
    expect(codes(messages)).toEqual(['E']);
    expect(errorFields(messages[0])).toMatchObject({
      S: 'FATAL',
      C: '0A000',
      M: 'replication connections are not supported through pgwarden',
    });
  });

  it('treats a second StartupMessage during SCRAM as a protocol violation (08P01) and closes', async () => {
    const wire = track(await connectTls(proxy.port));
    wire.write(frontend.startup({ user: 'alice', database: 'ehr' }));
    expect(authRequest((await wire.message())!).kind).toBe(10);
    const sentAt = Date.now();
    wire.write(frontend.startup({ user: 'bob', database: 'ehr' }));
    const messages = await wire.rest();
    expect(codes(messages)).toEqual(['E']);
    // Judged by its first byte as PostgreSQL does, not after waiting for a body its misread length promises
    // (which would end only at the startup timeout, with another message).
    expect(errorFields(messages[0])).toMatchObject({
      S: 'FATAL',
      C: '08P01',
      M: 'protocol violation: expected SASL response, got message type 0x0',
    });
    expect(Date.now() - sentAt).toBeLessThan(2000);
  });

  it('refuses an oversized SASL message before login at once, without waiting for (or buffering) its body', async () => {
    const wire = track(await connectTls(proxy.port));
    wire.write(frontend.startup({ user: 'alice', database: 'ehr' }));
    expect(authRequest((await wire.message())!).kind).toBe(10);
    const sentAt = Date.now();
    const header = Buffer.alloc(5);
    header[0] = 0x70; // 'p' announcing 512 MiB, within max_message_size but far over any SASL message
    header.writeInt32BE(512 * 1024 * 1024, 1);
    wire.write(Buffer.concat([header, Buffer.alloc(100)]));
    const messages = await wire.rest();
    expect(codes(messages)).toEqual(['E']);
    expect(errorFields(messages[0])).toMatchObject({ S: 'FATAL', C: '08P01' });
    expect(errorFields(messages[0]).M).toMatch(/exceeds the limit/);
    expect(Date.now() - sentAt).toBeLessThan(2000);
  });

  it('refuses a garbage SASLInitialResponse with 08P01, closes, and the worker still serves the next client', async () => {
    const wire = track(await connectTls(proxy.port));
    wire.write(frontend.startup({ user: 'alice', database: 'ehr' }));
    expect(authRequest((await wire.message())!).kind).toBe(10);
    wire.write(frontend.saslInitialResponse('SCRAM-SHA-256', Buffer.from('\x00garbage,,=not scram')));
    const messages = await wire.rest();
    expect(codes(messages)).toEqual(['E']);
    expect(errorFields(messages[0])).toMatchObject({ S: 'FATAL', C: '08P01' });
    expect(wire.isClosed).toBe(true);

    const client = await pgClient(proxy);
    try {
      expect((await client.query('select 41 + 1 as answer')).rows).toEqual([{ answer: 42 }]);
    } finally {
      await client.end();
    }
  });

  it('logs in by hand with SCRAM-SHA-256-PLUS and runs a FunctionCall (int4pl) that returns V then Z', async () => {
    const wire = track(await connectTls(proxy.port));
    const afterOk = await scramLogin(wire, 'alice', CLIENTS.alice, 'ehr');
    // ParameterStatus messages, then BackendKeyData, then ReadyForQuery (idle).
    const seq = codes(afterOk);
    expect(seq.slice(-2)).toEqual(['K', 'Z']);
    expect(seq.slice(0, -2).every((c) => c === 'S')).toBe(true);
    expect(seq.length).toBeGreaterThan(5);
    expect(afterOk.at(-1)!.body.toString('latin1')).toBe('I');

    wire.write(frontend.functionCall(177, ['40', '2'])); // int4pl(40, 2)
    const reply = await wire.until('Z');
    expect(codes(reply)).toEqual(['V', 'Z']);
    const len = reply[0].body.readInt32BE(0);
    expect(reply[0].body.toString('utf8', 4, 4 + len)).toBe('42');

    // int4pl is strict: a NULL argument gives a NULL result (length -1).
    wire.write(frontend.functionCall(177, [null, '2']));
    const nullReply = await wire.until('Z');
    expect(codes(nullReply)).toEqual(['V', 'Z']);
    expect(nullReply[0].body.readInt32BE(0)).toBe(-1);

    // The session goes on with a simple query after the function calls.
    wire.write(frontend.query('select 1'));
    expect(codes(await wire.until('Z'))).toEqual(['T', 'D', 'C', 'Z']);
    wire.write(frontend.terminate());
    expect(codes(await wire.rest())).toEqual([]);
  });
});
