// Opens the transport to an upstream PostgreSQL: TCP, then SSLRequest and TLS as the configured mode demands
// (disable / require / verify-ca / verify-full, like libpq's sslmode). Shared by logins and cancel requests.

import net from 'node:net';
import tls from 'node:tls';
import { sslRequest } from '../protocol/writer.js';
import type { UpstreamSettings } from './upstream-settings.js';

export class UpstreamConnectError extends Error {
  override readonly name = 'UpstreamConnectError';
}

/** Resolves with a connected socket (TLS when the mode asks for it), or rejects with a secret-free reason. */
export function openUpstreamSocket(settings: UpstreamSettings, signal: AbortSignal): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const raw = net.connect({ host: settings.host, port: settings.port, noDelay: true });
    let current: net.Socket = raw;
    const fail = (reason: string) => {
      signal.removeEventListener('abort', onAbort);
      current.destroy();
      raw.destroy();
      reject(new UpstreamConnectError(reason));
    };
    const onAbort = () => fail(`timed out after ${settings.connectTimeoutMs} ms`);
    signal.addEventListener('abort', onAbort, { once: true });
    raw.once('error', (e: NodeJS.ErrnoException) => fail(e.code ?? e.message));
    raw.once('connect', () => {
      if (settings.tls.mode === 'disable') {
        signal.removeEventListener('abort', onAbort);
        raw.removeAllListeners('error');
        resolve(raw);
        return;
      }
      raw.write(sslRequest());
      raw.once('data', (answer: Buffer) => {
        if (answer[0] !== 0x53 /* 'S' */) {
          fail(`the server does not accept TLS, but upstream.tls.mode is ${settings.tls.mode}`);
          return;
        }
        if (answer.length > 1) {
          // Bytes after 'S' and before the handshake could be injected by a man in the middle (CVE-2021-23222).
          fail('received unencrypted data after the TLS response');
          return;
        }
        const verify = settings.tls.mode === 'verify-ca' || settings.tls.mode === 'verify-full';
        const servername = settings.tls.serverName ?? (net.isIP(settings.host) ? undefined : settings.host);
        const secure = tls.connect({
          socket: raw,
          servername,
          ca: settings.tls.ca,
          rejectUnauthorized: verify,
          minVersion: 'TLSv1.2',
          checkServerIdentity:
            settings.tls.mode === 'verify-full'
              ? (_host, cert) => tls.checkServerIdentity(settings.tls.serverName ?? settings.host, cert)
              : () => undefined,
        });
        current = secure;
        secure.once('error', (e: NodeJS.ErrnoException) => fail(`TLS: ${e.code ?? e.message}`));
        secure.once('secureConnect', () => {
          signal.removeEventListener('abort', onAbort);
          secure.removeAllListeners('error');
          raw.removeAllListeners('error');
          resolve(secure);
        });
      });
    });
  });
}
