// What a server connection needs to reach one configured upstream: resolved from databases.<name>.upstream.

import type { FramerImpl } from '../protocol/framing.js';

export type UpstreamTlsMode = 'disable' | 'require' | 'verify-ca' | 'verify-full';

export interface UpstreamSettings {
  /** The databases: entry name, for messages and metrics (never the credentials). */
  readonly name: string;
  readonly host: string;
  readonly port: number;
  readonly database: string;
  readonly user: string;
  readonly password: string | undefined;
  readonly tls: {
    readonly mode: UpstreamTlsMode;
    readonly ca: Buffer | undefined;
    readonly serverName: string | undefined;
  };
  readonly connectTimeoutMs: number;
  readonly maxMessageSize: number;
  readonly framing: FramerImpl;
}
