// Free TCP ports for servers that cannot listen on port 0 (PostgreSQL, PgBouncer): random, bind-checked.
import { createServer } from 'node:net';

/**
 * Below the Linux ephemeral range (32768-60999), which pgbench's client sockets fill during a benchmark,
 * and above the well-known services of this machine (5432, 6379, ...).
 */
export const DEFAULT_PORT_RANGE: [number, number] = [20000, 32767];

function canBind(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/**
 * A random port in `range` that 127.0.0.1 can bind right now. Another process may still take it before
 * the server starts, so callers retry their server start with a fresh port when it reports the address in use.
 */
export async function pickFreePort(range: [number, number] = DEFAULT_PORT_RANGE): Promise<number> {
  const [low, high] = range;
  if (!(Number.isInteger(low) && Number.isInteger(high) && low >= 1 && high <= 65535 && low <= high)) {
    throw new RangeError(`invalid port range [${low}, ${high}]`);
  }
  const span = high - low + 1;
  const tries = Math.min(200, span * 2);
  for (let i = 0; i < tries; i++) {
    const port = low + Math.floor(Math.random() * span);
    if (await canBind(port, '127.0.0.1')) return port;
  }
  throw new Error(`no free port found in [${low}, ${high}] after ${tries} tries`);
}
