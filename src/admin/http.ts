// The admin HTTP endpoint on its own port: /metrics (Prometheus), /healthz (the process runs and has workers),
// /readyz (accepting new clients: false while starting or draining).

import http from 'node:http';
import { describeError, log } from '../core/log.js';

export interface AdminHandlers {
  metrics(): Promise<{ contentType: string; body: string }>;
  healthy(): boolean;
  ready(): boolean;
  /** Test hook (only with PGWARDEN_DEBUG_ENDPOINTS=1): abruptly terminate worker N, as a crash would. */
  terminateWorker?(index: number): boolean;
}

export function startAdminServer(host: string, port: number, h: AdminHandlers): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const url = req.url ?? '/';
    const reply = (status: number, body: string, type = 'text/plain; charset=utf-8') => {
      res.writeHead(status, { 'content-type': type });
      res.end(body);
    };
    if (req.method === 'GET' && url === '/metrics') {
      h.metrics().then(
        (m) => reply(200, m.body, m.contentType),
        (e) => {
          log.error('metrics scrape failed', { error: describeError(e) });
          reply(500, 'metrics unavailable\n');
        },
      );
      return;
    }
    if (req.method === 'GET' && url === '/healthz')
      return reply(h.healthy() ? 200 : 503, h.healthy() ? 'ok\n' : 'unhealthy\n');
    if (req.method === 'GET' && url === '/readyz')
      return reply(h.ready() ? 200 : 503, h.ready() ? 'ready\n' : 'not ready\n');
    const kill = /^\/debug\/workers\/(\d+)\/terminate$/.exec(url);
    if (req.method === 'POST' && kill && h.terminateWorker) {
      return reply(h.terminateWorker(Number(kill[1])) ? 202 : 404, '');
    }
    reply(404, 'not found\n');
  });
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => {
      server.removeListener('error', reject);
      resolve(server);
    });
  });
}
