// A worker thread: accepts its share of client connections on the shared port (SO_REUSEPORT) and runs those
// sessions end to end on its own event loop. It talks to the main thread only for lifecycle, reloads, cancel
// routing and metric snapshots.

import net from 'node:net';
import { parentPort, workerData } from 'node:worker_threads';
import { configureLog, describeError, log } from '../core/log.js';
import { buildRuntime } from '../frontend/build-runtime.js';
import { ClientSession } from '../frontend/client-session.js';
import { WorkerContext } from '../frontend/worker-context.js';
import { stats } from '../metrics/worker-stats.js';
import { WorkerAudit } from '../audit/worker-audit.js';
import { loadSqlParser } from '../policy/sql-analyze.js';
import type { FromWorker, ToWorker, WorkerInit } from './messages.js';

const init = workerData as WorkerInit;
const port = parentPort!;
const send = (m: FromWorker) => port.postMessage(m);

configureLog(init.config.log.level, { worker: init.index });

const ctx = new WorkerContext(init.index, buildRuntime(init.config, init.workerCount), (processId, secret) =>
  send({ type: 'cancel', processId, secret }),
);

const server = net.createServer({ noDelay: true }, (socket) => {
  try {
    new ClientSession(socket, ctx);
  } catch (e) {
    log.error('could not start a session', { error: describeError(e) });
    socket.destroy();
  }
});
server.on('error', (e) => {
  send({ type: 'listen-failed', reason: describeError(e) });
});
// The SQL parser (WASM) and the audit trail are ready before the first client is accepted: no statement may go
// unjudged or unrecorded.
Promise.all([WorkerAudit.open(init.config, init.index), loadSqlParser()]).then(
  ([audit]) => {
    ctx.audit = audit;
    server.listen(
      {
        host: init.config.listen.host,
        port: init.port,
        reusePort: true,
        backlog: init.config.listen.backlog,
      },
      () => send({ type: 'listening' }),
    );
  },
  (e) => send({ type: 'listen-failed', reason: `startup: ${describeError(e)}` }),
);

port.on('message', (m: ToWorker) => {
  switch (m.type) {
    case 'config':
      try {
        ctx.applyRuntime(buildRuntime(m.config, m.workerCount));
        configureLog(m.config.log.level, { worker: init.index });
      } catch (e) {
        send({ type: 'config-failed', reason: describeError(e) });
      }
      return;
    case 'cancel':
      ctx.cancelLocal(m.processId, Buffer.from(m.secret));
      return;
    case 'stats':
      send({ type: 'stats', requestId: m.requestId, snapshot: stats.snapshot() });
      return;
    case 'drain':
      server.close();
      ctx.drain(() => {
        // Closing the audit stream writes its end record and final signed checkpoint.
        const closed = ctx.audit ? ctx.audit.close() : Promise.resolve();
        closed
          .catch((e) => log.error('closing the audit log failed', { error: describeError(e) }))
          .finally(() => {
            send({ type: 'drained' });
            port.close();
            process.exit(0);
          });
      });
      return;
  }
});
