// Messages between the main thread and the workers. Nothing per statement crosses threads: only lifecycle,
// config, cancel routing (rare) and metric snapshots at scrape time.

import type { PgwardenConfig } from '../config/load.js';
import type { StatsSnapshot } from '../metrics/worker-stats.js';

export interface WorkerInit {
  index: number;
  port: number;
  config: PgwardenConfig;
  workerCount: number;
}

export type ToWorker =
  | { type: 'config'; config: PgwardenConfig; workerCount: number }
  | { type: 'cancel'; processId: number; secret: Uint8Array }
  | { type: 'stats'; requestId: number }
  | { type: 'drain' };

export type FromWorker =
  | { type: 'listening' }
  | { type: 'listen-failed'; reason: string }
  | { type: 'config-failed'; reason: string }
  | { type: 'cancel'; processId: number; secret: Uint8Array }
  | { type: 'stats'; requestId: number; snapshot: StatsSnapshot }
  | { type: 'drained' };
