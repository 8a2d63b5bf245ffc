// The per-worker view of the configuration that sessions read on their hot path: secrets resolved, files read,
// verifiers parsed, durations in milliseconds. Rebuilt on every reload; a session keeps the settings it started
// with for its pool, and reads `current` for anything decided per statement.

import type { ScramVerifier } from '../auth/scram-verifier.js';
import type { FramerImpl } from '../protocol/framing.js';
import type { UpstreamSettings } from '../backend/upstream-settings.js';
import type { ClientTls } from './tls.js';
import type { CertificateIdentity } from '../auth/client-cert.js';
import type { UserAuthMethod } from '../config/schema.js';
import type { CidrSet } from '../net/cidr.js';
import type { PolicyRuntime } from '../policy/policy-runtime.js';

export interface UserEntry {
  /** null: the user has no password (certificate only). */
  readonly verifier: ScramVerifier | null;
  readonly auth: UserAuthMethod;
  /** How a client certificate names this user; null when the user has none. */
  readonly certificate: CertificateIdentity | null;
  readonly roles: readonly string[];
  /** null: every configured database. */
  readonly databases: ReadonlySet<string> | null;
  /** null: any client address. */
  readonly cidrs: CidrSet | null;
  /** Roles an actor token may grant through this user; null when it may not assert actors. */
  readonly actorRoles: ReadonlySet<string> | null;
  readonly breakGlass: { readonly role: string; readonly maxDurationMs: number } | null;
}

export interface DatabaseEntry {
  readonly name: string;
  readonly upstream: UpstreamSettings;
  /** This worker's share of the pool size. */
  readonly poolSize: number;
  readonly minIdle: number;
  /** A fingerprint of everything that, when changed by a reload, needs a new pool. */
  readonly fingerprint: string;
}

export interface RuntimeSettings {
  /** Keys the mock SCRAM exchange for unknown users (stable across workers and nodes). */
  readonly mockSecret: Buffer;
  readonly allowPlaintext: boolean;
  readonly tls: ClientTls | null;
  readonly framing: FramerImpl;
  readonly maxClientsPerWorker: number;
  readonly maxClientConnections: number;
  readonly maxMessageSize: number;
  readonly maxStartupSize: number;
  readonly writeBufferHighWater: number;
  readonly startupTimeoutMs: number;
  readonly idleClientMs: number;
  readonly idleInTransactionMs: number;
  readonly poolAcquireMs: number;
  readonly serverIdleMs: number;
  readonly serverLifetimeMs: number;
  readonly drainMs: number;
  readonly users: ReadonlyMap<string, UserEntry>;
  readonly policy: PolicyRuntime;
  readonly databases: ReadonlyMap<string, DatabaseEntry>;
}
