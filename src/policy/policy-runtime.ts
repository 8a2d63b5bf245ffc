// The access-control part of a worker's runtime: compiled roles, the parse cache, actor-token keys, address rules
// and the lockout policy. Rebuilt with the rest of the runtime on every reload, so a SIGHUP applies new policy to
// the next statement of every session; a reload that fails to build changes nothing.

import type { PgwardenConfig } from '../config/schema.js';
import {
  jwtKeyFromPem,
  jwtKeyFromSecret,
  jwtKeysFromJwks,
  type JwtKey,
  type JwtVerifyOptions,
} from '../auth/jwt.js';
import type { LockoutPolicy } from '../auth/lockout.js';
import { CidrSet } from '../net/cidr.js';
import { SqlParseCache } from './parse-cache.js';
import { columnKeyOf, parseRoleMasks, type ColumnKey } from '../masking/mask-spec.js';
import { compileRole, type CompiledRole } from './rules.js';

export interface ActorTokenSettings {
  readonly verify: JwtVerifyOptions;
  readonly subjectClaim: string;
  readonly rolesClaim: string;
}

export interface PolicyRuntime {
  /** false: statements are forwarded unchecked (access.enforce: false). */
  readonly enforce: boolean;
  readonly roles: ReadonlyMap<string, CompiledRole>;
  readonly searchPath: readonly string[];
  readonly parseCache: SqlParseCache;
  readonly actorTokens: ActorTokenSettings | null;
  readonly denyCidrs: CidrSet;
  /** Load balancers whose connections start with a PROXY header; null when the listener takes none. */
  readonly proxyTrusted: CidrSet | null;
  /** null when lockout is off (max_failures 0). */
  readonly lockout: LockoutPolicy | null;
  /** Every role's masked and subject columns: what a database's mask catalog must locate. */
  readonly catalogColumns: readonly ColumnKey[];
  /** masking.redaction */
  readonly redaction: string;
  /** masking.mrn_formats and identifier_formats: what the content detectors recognise besides their own kinds. */
  readonly identifierFormats: readonly string[];
  /** masking.hash_key: the HMAC key of the hash mask; null when none is configured. */
  readonly hashKey: Buffer | null;
}

/** Header tokens carry claims; anything larger than this is not an actor token. */
const MAX_ACTOR_TOKEN_BYTES = 16 * 1024;

export function buildPolicyRuntime(config: PgwardenConfig): PolicyRuntime {
  const access = config.access;
  const roles = new Map<string, CompiledRole>();
  for (const [name, role] of Object.entries(config.roles)) roles.set(name, compileRole(name, role));
  const lockout = access.lockout;
  return {
    enforce: access.enforce,
    roles,
    searchPath: access.search_path,
    parseCache: new SqlParseCache(access.policy_cache_size),
    actorTokens: access.jwt ? buildActorTokens(access.jwt) : null,
    denyCidrs: new CidrSet(access.deny_cidrs),
    proxyTrusted: config.listen.proxy_protocol ? new CidrSet(config.listen.proxy_protocol.trusted) : null,
    catalogColumns: uniqueColumns(
      Object.entries(config.roles).flatMap(([name, r]): ColumnKey[] => [
        ...parseRoleMasks(name, r.masks, r.json_masks),
        ...(r.subject_column ? [columnKeyOf(r.subject_column)] : []),
      ]),
    ),
    redaction: config.masking.redaction,
    identifierFormats: [...config.masking.mrn_formats, ...config.masking.identifier_formats],
    hashKey: config.masking.hash_key === undefined ? null : hashKeyOf(config.masking.hash_key),
    lockout:
      lockout.max_failures > 0
        ? { maxFailures: lockout.max_failures, windowMs: lockout.window, cooldownMs: lockout.cooldown }
        : null,
  };
}

function uniqueColumns(masks: ColumnKey[]): ColumnKey[] {
  const seen = new Map<string, ColumnKey>();
  for (const m of masks) seen.set(`${m.schema}.${m.table}.${m.column}`, m);
  return [...seen.values()];
}

/** The hash mask's key: the file's bytes less one trailing newline; too short a key is refused at load. */
function hashKeyOf(text: string): Buffer {
  const key = Buffer.from(text.replace(/\r?\n$/, ''), 'utf8');
  if (key.length < 32) throw new Error('masking.hash_key_file: the key must be at least 32 bytes');
  return key;
}

function buildActorTokens(jwt: NonNullable<PgwardenConfig['access']['jwt']>): ActorTokenSettings {
  const keys: JwtKey[] = [];
  jwt.keys.forEach((k, i) => {
    const at = `access.jwt.keys[${i}]`;
    try {
      if (k.alg === 'HS256') keys.push(jwtKeyFromSecret(k.secret!.trimEnd(), k.kid));
      else keys.push(jwtKeyFromPem(k.public_key!, k.alg, k.kid));
    } catch (e) {
      throw new Error(`${at}: ${(e as Error).message}`, { cause: e });
    }
  });
  if (jwt.jwks !== undefined) {
    try {
      keys.push(...jwtKeysFromJwks(jwt.jwks));
    } catch (e) {
      throw new Error(`access.jwt.jwks_file: ${(e as Error).message}`, { cause: e });
    }
  }
  if (keys.length === 0) throw new Error('access.jwt: no usable verification key');
  return {
    verify: {
      keys,
      issuer: jwt.issuer ?? null,
      audience: jwt.audience ?? null,
      clockSkewMs: jwt.clock_skew,
      maxTokenBytes: MAX_ACTOR_TOKEN_BYTES,
      requireExp: true,
    },
    subjectClaim: jwt.subject_claim,
    rolesClaim: jwt.roles_claim,
  };
}
