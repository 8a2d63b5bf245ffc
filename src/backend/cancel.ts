// Sends a CancelRequest to the upstream backend that runs a client's query, with the upstream's own key (never
// shown to clients). Over TLS when the upstream is configured for it, so the key does not cross in clear text.

import { cancelRequest } from '../protocol/writer.js';
import { openUpstreamSocket } from './upstream-socket.js';
import type { UpstreamSettings } from './upstream-settings.js';

export async function sendCancel(
  settings: UpstreamSettings,
  processId: number,
  secret: Buffer,
): Promise<void> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), settings.connectTimeoutMs);
  try {
    const socket = await openUpstreamSocket(settings, abort.signal);
    await new Promise<void>((resolve) => {
      socket.on('error', () => resolve());
      socket.on('close', () => resolve());
      // The server closes the connection after reading the request; end() also covers a server that does not.
      socket.end(cancelRequest(processId, secret));
      setTimeout(() => socket.destroy(), settings.connectTimeoutMs).unref();
    });
  } finally {
    clearTimeout(timer);
  }
}
