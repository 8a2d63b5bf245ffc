// TLS towards clients: the secure context built once per config, and the upgrade of an accepted socket after an
// SSLRequest ('S') or on a PG17 direct-TLS connection (first byte 0x16, ALPN "postgresql" required).

import crypto from 'node:crypto';
import type net from 'node:net';
import tls from 'node:tls';
import { tryTlsServerEndPointHash } from '../auth/channel-binding.js';

export interface ClientTls {
  readonly context: tls.SecureContext;
  /** tls-server-end-point channel-binding data for SCRAM-SHA-256-PLUS; null when the certificate's signature
   *  algorithm defines no hash (Ed25519/Ed448), and then -PLUS is not offered, as in PostgreSQL. */
  readonly endPointHash: Buffer | null;
}

export function buildClientTls(opts: {
  cert: Buffer;
  key: Buffer;
  ca?: Buffer;
  minVersion: tls.SecureVersion;
  ciphers?: string;
}): ClientTls {
  const context = tls.createSecureContext({
    cert: opts.cert,
    key: opts.key,
    ca: opts.ca,
    minVersion: opts.minVersion,
    ciphers: opts.ciphers,
  });
  const leaf = new crypto.X509Certificate(opts.cert);
  return { context, endPointHash: tryTlsServerEndPointHash(leaf.raw) };
}

/**
 * Wraps the accepted socket in TLS. `replay` holds bytes already read that belong to the handshake (direct TLS);
 * Node feeds a socket's buffered data to the new TLS layer, so they are put back first.
 */
export function upgradeClient(raw: net.Socket, clientTls: ClientTls, replay: Buffer | null): tls.TLSSocket {
  raw.removeAllListeners('data');
  raw.pause();
  if (replay) raw.unshift(replay);
  return new tls.TLSSocket(raw, {
    isServer: true,
    secureContext: clientTls.context,
    requestCert: false,
    ALPNProtocols: ['postgresql'],
  });
}
