// Turns the validated config into the per-worker RuntimeSettings: reads certificates, parses verifiers, divides
// node-wide limits between workers. Runs on the main thread first (so a bad certificate fails `start` and a bad
// reload is refused) and then in each worker.

import crypto from 'node:crypto';
import fs from 'node:fs';
import { parseScramVerifier } from '../auth/scram-verifier.js';
import { loadPgwardenWasm } from '../wasm/loader.js';
import type { PgwardenConfig } from '../config/load.js';
import type { DatabaseEntry, RuntimeSettings, UserEntry } from './runtime.js';
import { buildClientTls } from './tls.js';
import { defaultAuthMethod } from '../config/load.js';
import { CidrSet } from '../net/cidr.js';
import { buildPolicyRuntime } from '../policy/policy-runtime.js';

export function buildRuntime(config: PgwardenConfig, workerCount: number): RuntimeSettings {
  // Fail at start (or refuse the reload), not at the first client, when the WASM build is missing or stale.
  if (config.framing === 'wasm') loadPgwardenWasm();
  const users = new Map<string, UserEntry>();
  for (const [name, u] of Object.entries(config.users)) {
    const verifier = u.password === undefined ? null : parseScramVerifier(u.password);
    if (u.password !== undefined && !verifier)
      throw new Error(`users.${name}.password: not a valid SCRAM-SHA-256 verifier`);
    users.set(name, {
      verifier,
      auth: u.auth ?? defaultAuthMethod(u),
      certificate: u.certificate
        ? {
            subjectCn: u.certificate.subject_cn ?? (u.certificate.san ? null : name),
            san: u.certificate.san ?? [],
          }
        : null,
      roles: u.roles,
      databases: u.databases ? new Set(u.databases) : null,
      cidrs: u.cidrs ? new CidrSet(u.cidrs) : null,
      actorRoles: u.actor ? new Set(u.actor.roles) : null,
      breakGlass: u.break_glass
        ? { role: u.break_glass.role, maxDurationMs: u.break_glass.max_duration }
        : null,
    });
  }
  const databases = new Map<string, DatabaseEntry>();
  for (const [name, d] of Object.entries(config.databases)) {
    const u = d.upstream;
    const upstream = {
      name,
      host: u.host,
      port: u.port,
      database: u.database,
      user: u.user,
      password: u.password,
      tls: {
        mode: u.tls.mode,
        ca: u.tls.ca ? Buffer.from(u.tls.ca) : undefined,
        serverName: u.tls.server_name,
      },
      connectTimeoutMs: u.connect_timeout,
      maxMessageSize: config.limits.max_message_size,
      framing: config.framing,
    };
    // Each worker pools on its own, so the node-wide size is shared out (rounded up: never zero).
    const poolSize = Math.max(1, Math.ceil(d.pool.size / workerCount));
    const minIdle = Math.ceil(d.pool.min_idle / workerCount);
    databases.set(name, {
      name,
      upstream,
      poolSize,
      minIdle,
      fingerprint: JSON.stringify([upstream, poolSize, minIdle]),
    });
  }
  const tls = config.tls
    ? buildClientTls({
        cert: fs.readFileSync(config.tls.cert),
        key: fs.readFileSync(config.tls.key),
        ca: config.tls.ca ? fs.readFileSync(config.tls.ca) : undefined,
        clientCa: config.tls.client_ca ? fs.readFileSync(config.tls.client_ca) : undefined,
        minVersion: config.tls.min_version,
        ciphers: config.tls.ciphers,
      })
    : null;
  const t = config.timeouts;
  // Mock SCRAM salts for unknown users must be the same on every worker, node and restart (a salt that changes
  // while real users' salts do not would reveal which names exist), and unguessable: derive them from secret
  // material the nodes share — the TLS key, else the users' server keys.
  const mockKeying = config.tls
    ? fs.readFileSync(config.tls.key)
    : Buffer.concat([...users.values()].flatMap((u) => (u.verifier ? [u.verifier.serverKey] : [])));
  const mockSecret = crypto.createHmac('sha256', mockKeying).update('pgwarden scram mock salt v1').digest();
  return {
    mockSecret,
    allowPlaintext: config.allow_plaintext,
    tls,
    framing: config.framing,
    maxClientConnections: config.limits.max_client_connections,
    maxClientsPerWorker: Math.max(1, Math.ceil(config.limits.max_client_connections / workerCount)),
    maxMessageSize: config.limits.max_message_size,
    maxStartupSize: config.limits.max_startup_size,
    writeBufferHighWater: config.limits.write_buffer_high_water,
    startupTimeoutMs: t.startup,
    idleClientMs: t.idle_client,
    idleInTransactionMs: t.idle_in_transaction,
    poolAcquireMs: t.pool_acquire,
    serverIdleMs: t.server_idle,
    serverLifetimeMs: t.server_lifetime,
    drainMs: t.drain,
    users,
    policy: buildPolicyRuntime(config),
    databases,
  };
}
