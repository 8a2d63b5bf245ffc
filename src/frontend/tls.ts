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
  /** tls.client_ca is set: clients are asked for a certificate (mTLS), verified against it. */
  readonly requestCert: boolean;
}

export function buildClientTls(opts: {
  cert: Buffer;
  key: Buffer;
  ca?: Buffer;
  clientCa?: Buffer;
  minVersion: tls.SecureVersion;
  ciphers?: string;
}): ClientTls {
  // OpenSSL's `ca` is both the chain sent to clients and the trust store for their certificates. With mTLS the
  // trust store must be client_ca alone, so the extra chain certificates travel with the certificate instead.
  const context = tls.createSecureContext({
    cert: opts.clientCa && opts.ca ? Buffer.concat([opts.cert, Buffer.from('\n'), opts.ca]) : opts.cert,
    key: opts.key,
    ca: opts.clientCa ?? opts.ca,
    minVersion: opts.minVersion,
    ciphers: opts.ciphers,
  });
  const leaf = new crypto.X509Certificate(opts.cert);
  return {
    context,
    endPointHash: tryTlsServerEndPointHash(leaf.raw),
    requestCert: opts.clientCa !== undefined,
  };
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
    // A certificate is asked for, never required at the TLS layer: password users connect without one, and a
    // certificate that does not verify is judged at login (socket.authorized), where the refusal can be a
    // PostgreSQL error instead of a handshake alert.
    requestCert: clientTls.requestCert,
    rejectUnauthorized: false,
    ALPNProtocols: ['postgresql'],
  });
}
