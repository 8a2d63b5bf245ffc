// The config schema: one TypeBox definition gives the TypeScript types, the runtime validator and the published JSON Schema.
import {
  Type,
  type Static,
  type TArray,
  type TLiteral,
  type TObject,
  type TOptional,
  type TProperties,
  type TRecord,
  type TSchema,
  type TString,
  type TUnion,
} from '@sinclair/typebox';
import { DURATION_PATTERN, MAX_DURATION_MS, MAX_SIZE_BYTES, SIZE_PATTERN } from './duration.js';

// ---------------------------------------------------------------------------------------------------------------
// Annotations the loader and the reference generator read. They sit under a symbol key so that JSON.stringify
// leaves them out of the published schema, and TypeBox copies them when it wraps a schema (Type.Optional spreads).

/** How the loader turns a validated value into its resolved form. */
export type ResolveKind = 'duration' | 'size' | 'workers' | 'path' | 'file' | 'directory';

export interface SchemaMeta {
  /** Resolution applied after validation (durations to ms, sizes to bytes, paths made absolute, files read). */
  readonly kind?: ResolveKind;
  /** The message for a value of the right JSON type but the wrong shape; gets the key path so it can name things. */
  readonly hint?: (path: readonly (string | number)[]) => string;
  /** A default that depends on the machine or on other keys, so it cannot be a JSON Schema `default`. */
  readonly computedDefault?: string;
  /** The type name the reference shows ("duration", "size", "path") instead of the JSON shape. */
  readonly docType?: string;
  /** For maps: what a key names ("database"), used in messages and as the placeholder in the reference. */
  readonly keyLabel?: string;
  /** For maps: what a valid key looks like, for the message about an invalid one. */
  readonly keyHint?: string;
}

export const Meta: unique symbol = Symbol('pgwarden.config.meta');

export function schemaMeta(schema: TSchema): SchemaMeta | undefined {
  return (schema as { [Meta]?: SchemaMeta })[Meta];
}

function annotate<T extends TSchema>(schema: T, meta: SchemaMeta): T {
  (schema as { [Meta]?: SchemaMeta })[Meta] = { ...schemaMeta(schema), ...meta };
  return schema;
}

// ---------------------------------------------------------------------------------------------------------------
// Type-level markers. They exist only in the types (never at runtime) so that one schema can describe both the
// file as written (keys with defaults may be omitted) and the config after loading (every defaulted key present,
// durations in ms, sizes in bytes).

declare const FilledMark: unique symbol;
declare const ResolvedAsMark: unique symbol;
declare const ExtraMark: unique symbol;

/** Optional in the file, always present after loading (it has a default, static or computed). */
export type TFilled<T extends TSchema> = TOptional<T> & { readonly [FilledMark]: true };
/** After loading, the value has type R (a duration string becomes a number of milliseconds). */
export type TResolvedAs<T extends TSchema, R> = T & { readonly [ResolvedAsMark]: R };
/** After loading, the object also carries E (keys the loader derives, such as where a password came from). */
export type TWithExtra<T extends TSchema, E> = T & { readonly [ExtraMark]: E };

type IsOptionalResolved<S> = S extends { readonly [FilledMark]: true }
  ? false
  : S extends TOptional<TSchema>
    ? true
    : false;
type Expand<T> = T extends infer O ? { [K in keyof O]: O[K] } : never;
type ResolvedProps<P extends TProperties> = {
  readonly [K in keyof P as IsOptionalResolved<P[K]> extends true ? never : K]: Resolved<P[K]>;
} & {
  readonly [K in keyof P as IsOptionalResolved<P[K]> extends true ? K : never]?: Resolved<P[K]>;
};

/** The deep-readonly type of a value after loading, derived from its schema. */
export type Resolved<T> = T extends { readonly [ResolvedAsMark]: infer R }
  ? R
  : T extends TObject<infer P>
    ? Expand<ResolvedProps<P> & (T extends { readonly [ExtraMark]: infer E } ? E : unknown)>
    : T extends TRecord<TSchema, infer V>
      ? { readonly [name: string]: Resolved<V> }
      : T extends TArray<infer I>
        ? readonly Resolved<I>[]
        : T extends TSchema
          ? Static<T>
          : never;

function filled<T extends TSchema>(schema: T): TFilled<T> {
  return Type.Optional(schema) as TFilled<T>;
}

function withExtra<E>() {
  return <T extends TSchema>(schema: T): TWithExtra<T, E> => schema as TWithExtra<T, E>;
}

// ---------------------------------------------------------------------------------------------------------------
// Building blocks.

const strict = { additionalProperties: false } as const;

function port(description: string, defaultPort: number) {
  return filled(Type.Integer({ minimum: 0, maximum: 65535, default: defaultPort, description }));
}

function host(description: string, defaultHost?: string) {
  const schema = Type.String({
    minLength: 1,
    description,
    ...(defaultHost === undefined ? {} : { default: defaultHost }),
  });
  return schema;
}

/** A duration: a number of milliseconds or a string with a unit. `min` is 0 where 0 means "off". */
function duration(description: string, options: { default?: string | number; min: 0 | 1 }) {
  const schema = Type.Union(
    [
      Type.Integer({ minimum: options.min, maximum: MAX_DURATION_MS }),
      Type.String({ pattern: DURATION_PATTERN }),
    ],
    { description, ...(options.default === undefined ? {} : { default: options.default }) },
  );
  return annotate(schema as TResolvedAs<typeof schema, number>, {
    kind: 'duration',
    docType: 'duration',
    hint: () =>
      'must be a duration: a number of milliseconds, or a string such as "500ms", "10s", "5m", "1h"',
  });
}

function size(description: string, options: { default: number; min: number; max?: number }) {
  const schema = Type.Union(
    [
      Type.Integer({ minimum: options.min, maximum: options.max ?? MAX_SIZE_BYTES }),
      Type.String({ pattern: SIZE_PATTERN }),
    ],
    { description, default: options.default },
  );
  return annotate(schema as TResolvedAs<typeof schema, number>, {
    kind: 'size',
    docType: 'size',
    hint: () => 'must be a size: a number of bytes, or a string such as "8192", "64KiB", "16MiB", "1GiB"',
  });
}

/** An IPv4 or IPv6 address or network (`10.0.0.0/8`, `::1`); checked by the loader's cross checks. */
function cidr(description: string) {
  return annotate(Type.String({ minLength: 2, maxLength: 64, description }), { docType: 'cidr' });
}

function path(description: string) {
  return annotate(Type.String({ minLength: 1, description }), { kind: 'path', docType: 'path' });
}

/** A directory pgwarden may create: resolved against the config file's directory, not required to exist yet. */
function directory(description: string) {
  return annotate(Type.String({ minLength: 1, description }), { kind: 'directory', docType: 'path' });
}

/** A `*_file` key: the loader reads the file and stores its content under the key without `_file`. */
function secretFile(description: string) {
  return annotate(Type.String({ minLength: 1, description }), { kind: 'file', docType: 'path' });
}

type LiteralTuple<V extends readonly string[]> = { -readonly [K in keyof V]: TLiteral<V[K]> };

/**
 * A choice among fixed strings, typed as the union of those strings (through `map` TypeBox would infer `string`).
 * With one value TypeBox returns the bare Literal; only Static is read from this type, and it is the same.
 */
function literals<const V extends readonly string[]>(
  values: V,
  options: { description: string; default?: V[number] },
): TUnion<Extract<LiteralTuple<V>, TSchema[]>> {
  return Type.Union(
    values.map((v) => Type.Literal(v)),
    options,
  ) as unknown as TUnion<Extract<LiteralTuple<V>, TSchema[]>>;
}

// A name as PostgreSQL accepts it in a startup packet: at most 63 characters (NAMEDATALEN - 1), no control characters.
const PG_NAME_PATTERN = '^[^\\u0000-\\u001f\\u007f]{1,63}$';
const PG_NAME_HINT = '1 to 63 characters, no control characters';
const ROLE_NAME_PATTERN = '^[A-Za-z_][A-Za-z0-9_-]{0,62}$';

function nameMap<V extends TSchema>(
  valueSchema: V,
  options: {
    pattern: string;
    keyLabel: string;
    keyHint: string;
    description: string;
    minProperties?: number;
    default?: Record<string, never>;
  },
) {
  return annotate(
    Type.Record(Type.String({ pattern: options.pattern }), valueSchema, {
      ...strict,
      description: options.description,
      ...(options.minProperties === undefined ? {} : { minProperties: options.minProperties }),
      ...(options.default === undefined ? {} : { default: options.default }),
    }) as TRecord<TString, V>,
    { keyLabel: options.keyLabel, keyHint: options.keyHint },
  );
}

// ---------------------------------------------------------------------------------------------------------------
// Sections.

const ListenSchema = Type.Object(
  {
    host: filled(host('Address the client listener binds to.', '127.0.0.1')),
    port: port('TCP port for PostgreSQL clients; 0 lets the operating system pick a free port.', 6432),
    backlog: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 65535,
        description:
          'Length of the queue of pending connections (listen(2) backlog); the Node default (511) when unset.',
      }),
    ),
    proxy_protocol: Type.Optional(
      Type.Object(
        {
          trusted: Type.Array(cidr('A load balancer address or network.'), {
            minItems: 1,
            description:
              'Load balancers (CIDRs) whose connections must begin with a PROXY protocol v1 or v2 header; the client address it carries is used for IP rules, lockouts and audit. A header from any other address is refused.',
          }),
        },
        {
          ...strict,
          description: 'PROXY protocol (HAProxy) from load balancers in front of pgwarden.',
        },
      ),
    ),
  },
  { ...strict, default: {}, description: 'Where PostgreSQL clients connect.' },
);

const AdminSchema = Type.Object(
  {
    host: filled(host('Address the admin HTTP server binds to.', '127.0.0.1')),
    port: port('TCP port of the admin HTTP server; 0 lets the operating system pick a free port.', 9187),
    enabled: filled(Type.Boolean({ default: true, description: 'Serve the admin endpoints at all.' })),
  },
  {
    ...strict,
    default: {},
    description: 'The admin HTTP server: /metrics (Prometheus), /healthz and /readyz.',
  },
);

const ServerTlsSchema = Type.Object(
  {
    cert: path('Server certificate chain (PEM) presented to clients.'),
    key: path('Private key (PEM) of the server certificate.'),
    ca: Type.Optional(
      path('Extra CA certificates (PEM) sent with the server certificate to complete its chain.'),
    ),
    min_version: filled(
      literals(['TLSv1.2', 'TLSv1.3'] as const, {
        default: 'TLSv1.2',
        description:
          'Oldest TLS version accepted from clients (HIPAA transmission security needs 1.2 or newer).',
      }),
    ),
    ciphers: Type.Optional(
      Type.String({
        minLength: 1,
        description: 'OpenSSL cipher list for TLS 1.2; the Node default when unset.',
      }),
    ),
    client_ca: Type.Optional(
      path(
        'CA certificates (PEM) that sign client certificates. When set, clients are asked for a certificate (mTLS); users with `certificate` log in with one signed by this CA.',
      ),
    ),
  },
  {
    ...strict,
    description: 'TLS for client connections. Required unless allow_plaintext is true.',
  },
);

const LimitsSchema = Type.Object(
  {
    max_client_connections: filled(
      Type.Integer({
        minimum: 1,
        default: 1000,
        description: 'Client connections this node accepts at once; more are refused with SQLSTATE 53300.',
      }),
    ),
    max_message_size: filled(
      size(
        "Largest protocol message accepted from either side (its length field); PostgreSQL's own limit, MaxAllocSize (1 GiB - 1), by default.",
        { default: 1_073_741_823, min: 1024 },
      ),
    ),
    max_startup_size: filled(
      size(
        'Largest startup packet accepted from a client; 10000 like PostgreSQL (MAX_STARTUP_PACKET_LENGTH).',
        {
          default: 10_000,
          min: 8,
          max: 1_048_576,
        },
      ),
    ),
    write_buffer_high_water: filled(
      size(
        'Bytes queued for a slow peer before reading from the other side pauses (backpressure bounds memory per connection).',
        { default: 1_048_576, min: 1024 },
      ),
    ),
  },
  { ...strict, default: {}, description: 'Resource limits per node and per connection.' },
);

const TimeoutsSchema = Type.Object(
  {
    startup: filled(
      duration('Time a client has to finish TLS, the startup packet and authentication.', {
        default: '10s',
        min: 1,
      }),
    ),
    idle_client: filled(
      duration(
        'Automatic logoff: a client idle this long outside a transaction is disconnected (HIPAA 164.312(a)(2)(iii)); 0 disables.',
        { default: 0, min: 0 },
      ),
    ),
    idle_in_transaction: filled(
      duration('A client idle this long inside a transaction is disconnected; 0 disables.', {
        default: 0,
        min: 0,
      }),
    ),
    upstream_connect: filled(
      duration('Time to connect and log in to PostgreSQL, unless a database sets its own connect_timeout.', {
        default: '5s',
        min: 1,
      }),
    ),
    pool_acquire: filled(
      duration('How long a client waits for a server connection before it is refused with SQLSTATE 53300.', {
        default: '10s',
        min: 1,
      }),
    ),
    server_idle: filled(
      duration('Idle pooled server connections are closed after this; 0 keeps them open.', {
        default: '10m',
        min: 0,
      }),
    ),
    server_lifetime: filled(
      duration('Server connections are closed once released after being open this long; 0 means no limit.', {
        default: '1h',
        min: 0,
      }),
    ),
    drain: filled(
      duration(
        'On SIGTERM, time for running work to finish before remaining sessions are ended with SQLSTATE 57P01; 0 ends them at once.',
        { default: '30s', min: 0 },
      ),
    ),
  },
  {
    ...strict,
    default: {},
    description: 'Timeouts. Numbers are milliseconds; strings take a unit: "500ms", "10s", "5m", "1h", "1d".',
  },
);

export const UPSTREAM_TLS_MODES = ['disable', 'require', 'verify-ca', 'verify-full'] as const;
export type UpstreamTlsMode = (typeof UPSTREAM_TLS_MODES)[number];

/** TLS to a PostgreSQL server; the audit table sink takes it without the `{}` default (only its sinks have one). */
function upstreamTlsSchema(withDefault: boolean) {
  return withExtra<{
    /** Content of ca_file (PEM), read at load. */
    readonly ca?: string;
  }>()(
    Type.Object(
      {
        mode: filled(
          literals(UPSTREAM_TLS_MODES, {
            default: 'require',
            description:
              "TLS to PostgreSQL, as libpq's sslmode: disable, require (encrypt, no certificate check), verify-ca (certificate signed by ca_file), verify-full (verify-ca and the host name).",
          }),
        ),
        ca_file: Type.Optional(
          secretFile(
            'CA certificates (PEM) that sign the server certificate; required for verify-ca and verify-full.',
          ),
        ),
        server_name: Type.Optional(
          Type.String({
            minLength: 1,
            description: 'Host name to verify (and send as SNI) instead of upstream.host.',
          }),
        ),
      },
      {
        ...strict,
        ...(withDefault ? { default: {} } : {}),
        description: 'TLS between pgwarden and PostgreSQL.',
      },
    ),
  );
}

const UpstreamTlsSchema = upstreamTlsSchema(true);

export const AUDIT_MODES = ['durable', 'buffered'] as const;

/** Defaults of the postgres sink's keys, applied to postgres sinks only (a file sink must not grow a port). */
export const AUDIT_PG_DEFAULTS = { port: 5432, table: 'pgwarden_audit' } as const;

const AuditSinkSchema = withExtra<{
  /** type postgres: content of password_file, read at load. */
  readonly password?: string;
}>()(
  Type.Object(
    {
      type: literals(['file', 'stdout', 'postgres'] as const, {
        description:
          'file: rotating JSON Lines files in path; stdout: one JSON line per record on standard output; postgres: rows of a table in a separate audit database (one COPY per batch).',
      }),
      path: Type.Optional(directory('Directory of the audit files (type file); created 0700 when missing.')),
      host: Type.Optional(host('type postgres: host name or address of the audit database server.')),
      port: Type.Optional(
        annotate(
          Type.Integer({
            minimum: 1,
            maximum: 65535,
            description: 'type postgres: port of the audit database.',
          }),
          { computedDefault: `\`${AUDIT_PG_DEFAULTS.port}\`` },
        ),
      ),
      database: Type.Optional(
        Type.String({
          minLength: 1,
          maxLength: 63,
          description: 'type postgres: name of the audit database.',
        }),
      ),
      user: Type.Optional(
        Type.String({
          minLength: 1,
          maxLength: 63,
          description:
            'type postgres: account that writes the audit table; its own, never a proxied database account.',
        }),
      ),
      password: Type.Optional(
        Type.String({
          minLength: 1,
          description: 'type postgres: password of user; write ${ENV_VAR} rather than the secret itself.',
        }),
      ),
      password_file: Type.Optional(
        secretFile('type postgres: file holding the password (one trailing newline is ignored).'),
      ),
      tls: Type.Optional(upstreamTlsSchema(false)),
      table: Type.Optional(
        annotate(
          Type.String({
            pattern: '^[A-Za-z_][A-Za-z0-9_$]{0,62}(\\.[A-Za-z_][A-Za-z0-9_$]{0,62})?$',
            description:
              'type postgres: the audit table, name or schema.name (plain identifiers, case kept); created when missing.',
          }),
          {
            computedDefault: `\`${JSON.stringify(AUDIT_PG_DEFAULTS.table)}\``,
            hint: () => 'must be an identifier or schema.identifier (letters, digits, _ and $)',
          },
        ),
      ),
    },
    { ...strict, description: 'Where audit records go.' },
  ),
);

const AuditSchema = withExtra<{
  /** Content of signing_key_file (PEM), read at load. */
  readonly signing_key: string;
  /** Content of params_key_file, read at load. */
  readonly params_key?: string;
}>()(
  Type.Object(
    {
      mode: filled(
        literals(AUDIT_MODES, {
          default: 'durable',
          description:
            'durable: a statement is forwarded only after its record is on disk (fsync, shared by concurrent sessions); buffered: records are flushed every flush_interval.',
        }),
      ),
      sinks: Type.Array(AuditSinkSchema, { minItems: 1, description: 'Audit sinks, all written.' }),
      signing_key_file: secretFile(
        'Ed25519 private key (PEM, as `openssl genpkey -algorithm ed25519` writes it) that signs checkpoint records.',
      ),
      params: filled(
        literals(['none', 'hash', 'full'] as const, {
          default: 'none',
          description:
            'Bind parameters in statement records: none (default; they may be PHI), hash (keyed HMAC-SHA-256 of each), full (the values: explicit opt-in).',
        }),
      ),
      params_key_file: Type.Optional(
        secretFile('Key for params: hash (any secret bytes; keep it off the audit host).'),
      ),
      flush_interval: filled(
        duration('buffered mode: records are written and fsynced at least this often (the loss window).', {
          default: '5ms',
          min: 1,
        }),
      ),
      checkpoint_every: filled(
        Type.Integer({
          minimum: 1,
          default: 1000,
          description: 'A signed checkpoint after this many records.',
        }),
      ),
      checkpoint_interval: filled(
        duration('A signed checkpoint at least this often while records are written.', {
          default: '10s',
          min: 1,
        }),
      ),
      rotate_size: filled(
        size('A file is closed (with a checkpoint) and a new one begun past this size.', {
          default: 64 * 1024 * 1024,
          min: 4096,
        }),
      ),
      rotate_interval: filled(duration('A file is rotated at least this often.', { default: '1d', min: 1 })),
      retain_files: filled(
        Type.Integer({
          minimum: 1,
          default: 30,
          description: 'Rotated files kept per stream; older ones are deleted.',
        }),
      ),
      on_failure: filled(
        literals(['refuse', 'continue'] as const, {
          default: 'refuse',
          description:
            'When a sink cannot write: refuse new statements (SQLSTATE 58030) until it can again, or continue (explicit opt-in; records are held in memory up to a bound, then counted as lost).',
        }),
      ),
    },
    {
      ...strict,
      description:
        'Tamper-evident audit trail of sessions and statements (hash-chained JSON Lines, signed checkpoints).',
    },
  ),
);

const LogSchema = Type.Object(
  {
    level: filled(
      literals(['debug', 'info', 'warn', 'error'] as const, {
        default: 'info',
        description: 'Least severe level written.',
      }),
    ),
    format: filled(
      literals(['json'] as const, {
        default: 'json',
        description: 'Log line format (JSON lines on stdout).',
      }),
    ),
  },
  { ...strict, default: {}, description: 'Logging.' },
);

/** Where the resolved upstream password came from; what `pgwarden check` shows instead of the password. */
export type PasswordSource = 'config' | 'env' | 'file' | 'none';

const UpstreamSchema = withExtra<{ readonly password_source: PasswordSource }>()(
  Type.Object(
    {
      host: host('Host name or address of the PostgreSQL server.'),
      port: port('Port of the PostgreSQL server.', 5432),
      database: filled(
        annotate(Type.String({ minLength: 1, maxLength: 63, description: 'Database name on the server.' }), {
          computedDefault: 'the entry name',
        }),
      ),
      user: Type.String({
        minLength: 1,
        maxLength: 63,
        description: 'Account pgwarden logs in with. Clients never learn it or its password.',
      }),
      password: Type.Optional(
        Type.String({
          minLength: 1,
          description: 'Password of the upstream account; write ${ENV_VAR} rather than the secret itself.',
        }),
      ),
      password_file: Type.Optional(
        secretFile(
          'File holding the upstream password (one trailing newline is ignored). Use instead of password.',
        ),
      ),
      tls: filled(UpstreamTlsSchema),
      connect_timeout: filled(
        annotate(duration('Time to connect and log in to this server.', { min: 1 }), {
          computedDefault: 'timeouts.upstream_connect',
        }),
      ),
    },
    {
      ...strict,
      description:
        'The PostgreSQL server behind this entry. Set password or password_file, or neither when the server trusts pgwarden.',
    },
  ),
);

export const POOL_MODES = ['session'] as const;

const PoolSchema = Type.Object(
  {
    mode: filled(
      annotate(
        literals(POOL_MODES, {
          default: 'session',
          description: 'When a server connection returns to the pool: session (when the client leaves).',
        }),
        { hint: () => "must be 'session' ('transaction' pooling is not supported yet)" },
      ),
    ),
    size: filled(
      Type.Integer({
        minimum: 1,
        maximum: 10_000,
        default: 20,
        description: 'Most server connections this node opens to the database.',
      }),
    ),
    min_idle: filled(
      Type.Integer({
        minimum: 0,
        default: 0,
        description:
          'Idle server connections kept open past timeouts.server_idle, so a burst after a quiet spell finds them warm (they still close at server_lifetime).',
      }),
    ),
  },
  { ...strict, default: {}, description: 'Server connection pool (per node).' },
);

const DatabaseSchema = Type.Object(
  { upstream: UpstreamSchema, pool: filled(PoolSchema) },
  { ...strict, description: 'One routable database.' },
);

// SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>, as PostgreSQL stores it in pg_authid (base64 parts).
const B64 = '[A-Za-z0-9+/]+={0,2}';
export const SCRAM_VERIFIER_PATTERN = `^SCRAM-SHA-256\\$[1-9][0-9]{0,9}:${B64}\\$${B64}:${B64}$`;

const NameList = (description: string) =>
  Type.Array(Type.String({ minLength: 1, description: 'A name.' }), { description });

export const USER_AUTH_METHODS = ['password', 'certificate', 'both'] as const;
export type UserAuthMethod = (typeof USER_AUTH_METHODS)[number];

const UserSchema = Type.Object(
  {
    password: Type.Optional(
      annotate(
        Type.String({
          pattern: SCRAM_VERIFIER_PATTERN,
          description:
            'SCRAM-SHA-256 verifier (SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>) printed by `pgwarden passwd NAME`; plaintext passwords are refused.',
        }),
        {
          hint: (p) =>
            `must be a SCRAM-SHA-256 verifier, not a plaintext password: run \`pgwarden passwd ${String(p[1] ?? 'NAME')}\` and paste its output`,
        },
      ),
    ),
    certificate: Type.Optional(
      Type.Object(
        {
          subject_cn: Type.Optional(
            Type.String({
              minLength: 1,
              description: "The certificate's subject common name (CN) that identifies this user.",
            }),
          ),
          san: Type.Optional(
            Type.Array(Type.String({ minLength: 1, description: 'e.g. email:alice@example.org' }), {
              minItems: 1,
              description:
                'Subject alternative names that identify this user, written as OpenSSL prints them: email:…, DNS:…, URI:…, IP Address:….',
            }),
          ),
        },
        {
          ...strict,
          description:
            'Client certificate (mTLS, signed by tls.client_ca) that identifies this user: by subject CN, by SAN, or by either; `{}` means CN = the user name.',
        },
      ),
    ),
    auth: Type.Optional(
      annotate(
        literals(USER_AUTH_METHODS, {
          description:
            'How the user proves who it is: password (SCRAM), certificate (mTLS), or both (two factors). Default: both when password and certificate are set, else the one that is.',
        }),
        { computedDefault: 'both when password and certificate are set, else the one set' },
      ),
    ),
    roles: filled(
      Type.Array(Type.String({ minLength: 1, description: 'Name of an entry of roles.' }), {
        default: [],
        description:
          'Roles granted to this user (names of entries of roles). Several roles combine: what any one allows is allowed, unless another denies it. A user with no roles can log in but run nothing.',
      }),
    ),
    databases: Type.Optional(
      Type.Array(Type.String({ minLength: 1, description: 'Name of an entry of databases.' }), {
        description: 'Entries of databases this user may connect to; all of them when unset.',
      }),
    ),
    cidrs: Type.Optional(
      Type.Array(cidr('An address or network.'), {
        description: 'Client addresses this user may connect from; any when unset.',
      }),
    ),
    actor: Type.Optional(
      Type.Object(
        {
          roles: Type.Array(Type.String({ minLength: 1, description: 'Name of an entry of roles.' }), {
            minItems: 1,
            description:
              'Roles an actor token may grant through this user; a token asking for any other is refused.',
          }),
        },
        {
          ...strict,
          description:
            "A service user that may assert the acting person with SET [LOCAL] pgwarden.actor = '<JWT>' (verified with access.jwt). The actor's roles then replace the user's own.",
        },
      ),
    ),
    break_glass: Type.Optional(
      Type.Object(
        {
          role: Type.String({ minLength: 1, description: 'Name of an entry of roles.' }),
          max_duration: filled(
            duration('How long emergency access lasts before it ends on its own.', {
              default: '60m',
              min: 1,
            }),
          ),
        },
        {
          ...strict,
          description:
            "Emergency access: SET pgwarden.break_glass = '<reason>' gives this role (instead of the user's own) for max_duration; every statement is marked in audit.",
        },
      ),
    ),
  },
  { ...strict, description: 'One client identity.' },
);

/** The masking functions a mask may name (see src/masking/mask-spec.ts). */
export const MASK_FUNCTION_PATTERN =
  "^(redact|null|partial_last4|partial\\([0-9]{1,2},[0-9]{1,2}\\)|year_only|month_year|zip3|email|hash|fixed\\('[^']{0,256}'\\))$";

export const STATEMENT_KINDS = [
  'select',
  'insert',
  'update',
  'delete',
  'merge',
  'copy_in',
  'copy_out',
  'ddl',
  'call',
  'set',
  'transaction',
  'utility',
] as const;
export type StatementKind = (typeof STATEMENT_KINDS)[number];

const patternList = (description: string, example: string) =>
  Type.Array(
    Type.String({
      pattern: '^[^\\s]+$',
      description: `A name or glob pattern (* matches any characters), e.g. ${example}.`,
    }),
    { description },
  );

const RoleSchema = Type.Object(
  {
    admin: filled(
      Type.Boolean({
        default: false,
        description:
          'Admin roles are exempt from the default guardrails (DDL, TRUNCATE, ALTER SYSTEM, COPY with files or programs, DO, SET ROLE, server file and large-object functions, UPDATE/DELETE without WHERE). Table, column and function denials still apply.',
      }),
    ),
    databases: Type.Optional(
      NameList('Entries of databases this role may be used in; all of them when unset.'),
    ),
    statements: Type.Optional(
      Type.Array(literals(STATEMENT_KINDS, { description: 'A kind of SQL statement.' }), {
        description: `Kinds of statement this role may run: ${STATEMENT_KINDS.join(', ')}. None when unset.`,
      }),
    ),
    tables: Type.Optional(
      Type.Object(
        {
          allow: Type.Optional(
            patternList(
              'Relations (schema.table patterns) this role may touch; any not denied when unset.',
              'public.*',
            ),
          ),
          deny: Type.Optional(
            patternList('Relations (schema.table patterns) this role may not touch.', 'public.audit_*'),
          ),
        },
        { ...strict, description: 'Table and view rules, as schema.table glob patterns (case-sensitive).' },
      ),
    ),
    columns: Type.Optional(
      Type.Object(
        {
          deny: patternList(
            'Columns (schema.table.column) that may not be referenced at all, not even in WHERE; `SELECT *` over their table is refused too.',
            'public.patients.ssn',
          ),
        },
        { ...strict, description: 'Column rules.' },
      ),
    ),
    functions: Type.Optional(
      Type.Object(
        {
          allow: Type.Optional(
            patternList(
              'When set, only functions matching these (name or schema.name) may be called.',
              'lower',
            ),
          ),
          deny: Type.Optional(
            patternList(
              'Functions (name or schema.name patterns) this role may not call, on top of the guardrail list.',
              'public.purge_*',
            ),
          ),
        },
        { ...strict, description: 'Function rules; an unqualified call matches by its bare name.' },
      ),
    ),
    require_where: filled(
      Type.Boolean({
        default: true,
        description: 'Refuse UPDATE and DELETE without a WHERE clause (non-admin roles).',
      }),
    ),
    max_rows: Type.Optional(
      Type.Integer({
        minimum: 1,
        description:
          'Most rows one statement may return; beyond it the result is stopped with SQLSTATE 54000.',
      }),
    ),
    idle_timeout: Type.Optional(
      duration('Automatic logoff for sessions with this role when idle outside a transaction.', { min: 1 }),
    ),
    cidrs: Type.Optional(
      Type.Array(cidr('An address or network.'), {
        description: 'Client addresses this role may be used from; any when unset.',
      }),
    ),
    json_masks: Type.Optional(
      nameMap(
        Type.Record(
          Type.String({ pattern: '^\\$.+$' }),
          annotate(
            Type.String({
              pattern: MASK_FUNCTION_PATTERN,
              description: 'Masking function applied to the value at the path.',
            }),
            { hint: () => 'must be a masking function such as redact or partial_last4' },
          ),
          {
            ...strict,
            description:
              "JSON paths ($.name, ['name'], [*], .*, [N], ..name) inside the document and the mask of each.",
          },
        ),
        {
          pattern: '^[^.\\s]+\\.[^.\\s]+\\.[^.\\s]+$',
          keyLabel: 'column',
          keyHint: 'written as schema.table.column',
          description:
            'Masks inside json/jsonb documents, by column: `public.resources.body: { "$.identifier[*].value": redact }`. The rest of the document is returned as it is; a value that is not JSON is redacted.',
        },
      ),
    ),
    safe_harbor: filled(
      Type.Boolean({
        default: false,
        description:
          'HIPAA Safe Harbor preset: every text column that no mask covers goes through the content detectors (SSN, phone, e-mail, card numbers, dates, ZIP codes), not only expressions.',
      }),
    ),
    subject_column: Type.Optional(
      annotate(
        Type.String({
          pattern: '^[^.\\s]+\\.[^.\\s]+\\.[^.\\s]+$',
          description:
            'Accounting of disclosures (HIPAA 164.528): the column that identifies a patient, as schema.table.column; every statement of this role records in the audit trail a keyed hash (masking.hash_key_file) of each value of it returned.',
        }),
        { hint: () => 'must be written as schema.table.column' },
      ),
    ),
    allow_masked_predicates: filled(
      Type.Boolean({
        default: false,
        description:
          'Let this role use its masked columns where they can reveal a masked value one query at a time: in WHERE, JOIN, ORDER BY, GROUP BY, HAVING and window clauses, in comparisons and comparing functions (strpos, regexp_match, greatest, min, max, ...), in DISTINCT and set operations other than UNION ALL, and in computations that may raise an error for some values (casts to types other than text, arithmetic, functions not known to accept every value). Refused by default.',
      }),
    ),
    masks: Type.Optional(
      nameMap(
        annotate(
          Type.String({
            pattern: MASK_FUNCTION_PATTERN,
            description:
              "Masking function applied to the column: redact, null, partial_last4, partial(FIRST,LAST), year_only, month_year, zip3, email, hash, fixed('TEXT').",
          }),
          {
            hint: () =>
              "must be a masking function: redact, null, partial_last4, partial(0,4), year_only, month_year, zip3, email, hash or fixed('text')",
          },
        ),
        {
          pattern: '^[^.\\s]+\\.[^.\\s]+\\.[^.\\s]+$',
          keyLabel: 'column',
          keyHint: 'written as schema.table.column',
          description: 'Columns this role sees masked, as schema.table.column: masking function.',
        },
      ),
    ),
  },
  { ...strict, description: 'A named set of permissions granted to users.' },
);

export const JWT_ALGORITHMS = ['HS256', 'RS256', 'EdDSA'] as const;

const JwtKeySchema = withExtra<{
  /** Content of secret_file, read at load. */
  readonly secret?: string;
  /** Content of public_key_file, read at load. */
  readonly public_key?: string;
}>()(
  Type.Object(
    {
      alg: literals(JWT_ALGORITHMS, { description: 'Signature algorithm of this key.' }),
      kid: Type.Optional(Type.String({ minLength: 1, description: "Key id; a token's kid must match." })),
      secret_file: Type.Optional(secretFile('HS256: file with the shared secret (at least 32 bytes).')),
      public_key_file: Type.Optional(secretFile('RS256 / EdDSA: the public key (PEM).')),
    },
    { ...strict, description: 'One key that verifies actor tokens.' },
  ),
);

const AccessSchema = Type.Object(
  {
    enforce: filled(
      Type.Boolean({
        default: true,
        description:
          'Check every statement against the roles. false turns SQL policy off (logins, addresses and lockouts still apply); for benchmarks and migrations only.',
      }),
    ),
    deny_cidrs: filled(
      Type.Array(cidr('An address or network.'), {
        default: [],
        description: 'Client addresses refused for every user, before authentication.',
      }),
    ),
    search_path: filled(
      Type.Array(Type.String({ minLength: 1, description: 'A schema name.' }), {
        default: ['public'],
        minItems: 1,
        description:
          'search_path pinned for sessions whose roles have table or column rules; they may not change it. Unqualified names are checked against every schema in it (and against pg_catalog for names that start with pg_).',
      }),
    ),
    policy_cache_size: filled(
      Type.Integer({
        minimum: 16,
        maximum: 1_000_000,
        default: 10_000,
        description: 'Parsed statements cached per worker, by statement text (LRU).',
      }),
    ),
    lockout: filled(
      Type.Object(
        {
          max_failures: filled(
            Type.Integer({
              minimum: 0,
              default: 5,
              description:
                'Failed logins per user name or per client address within window before further attempts are refused; 0 disables lockout.',
            }),
          ),
          window: filled(duration('Window in which failures count.', { default: '5m', min: 1 })),
          cooldown: filled(duration('How long a lockout lasts.', { default: '15m', min: 1 })),
        },
        { ...strict, default: {}, description: 'Brute-force lockout.' },
      ),
    ),
    jwt: Type.Optional(
      withExtra<{
        /** Content of jwks_file, read at load. */
        readonly jwks?: string;
      }>()(
        Type.Object(
          {
            issuer: Type.Optional(
              Type.Array(Type.String({ minLength: 1, description: 'An issuer.' }), {
                minItems: 1,
                description: "Accepted values of the token's iss claim.",
              }),
            ),
            audience: Type.Optional(
              Type.Array(Type.String({ minLength: 1, description: 'An audience.' }), {
                minItems: 1,
                description: "Accepted values of the token's aud claim (any one must match).",
              }),
            ),
            keys: filled(Type.Array(JwtKeySchema, { default: [], description: 'Keys that verify tokens.' })),
            jwks_file: Type.Optional(secretFile('A JWKS document (JSON) with more verification keys.')),
            clock_skew: filled(duration('Tolerance for exp and nbf.', { default: '30s', min: 0 })),
            subject_claim: filled(
              Type.String({ minLength: 1, default: 'sub', description: 'Claim that names the actor.' }),
            ),
            roles_claim: filled(
              Type.String({
                minLength: 1,
                default: 'roles',
                description: "Claim with the actor's roles (an array of role names).",
              }),
            ),
          },
          {
            ...strict,
            description: 'Verification of actor tokens (SET pgwarden.actor) for users with `actor`.',
          },
        ),
      ),
    ),
  },
  {
    ...strict,
    default: {},
    description: 'Access control: SQL policy, address rules, lockout, actor tokens.',
  },
);

const WorkersUnion = Type.Union([Type.Literal('auto'), Type.Integer({ minimum: 1, maximum: 256 })], {
  default: 'auto',
  description: "Worker threads serving clients; 'auto' is the machine's available parallelism.",
});
const WorkersSchema = annotate(WorkersUnion as TResolvedAs<typeof WorkersUnion, number>, {
  kind: 'workers',
  hint: () => "must be 'auto' or an integer from 1 to 256",
});

// ---------------------------------------------------------------------------------------------------------------
// The whole file.

export const ConfigSchema = Type.Object(
  {
    listen: filled(ListenSchema),
    admin: filled(AdminSchema),
    workers: filled(WorkersSchema),
    node_id: filled(
      annotate(
        Type.String({
          minLength: 1,
          maxLength: 255,
          description: 'Name of this node in logs, metrics and the audit trail.',
        }),
        { computedDefault: 'the host name' },
      ),
    ),
    framing: filled(
      literals(['wasm', 'typescript'] as const, {
        default: 'wasm',
        description: 'Protocol framing engine: the WASM scanner, or its TypeScript twin as a fallback.',
      }),
    ),
    allow_plaintext: filled(
      Type.Boolean({
        default: false,
        description: 'Accept clients without TLS. When false, they are refused with SQLSTATE 28000.',
      }),
    ),
    tls: Type.Optional(ServerTlsSchema),
    limits: filled(LimitsSchema),
    timeouts: filled(TimeoutsSchema),
    log: filled(LogSchema),
    audit: Type.Optional(AuditSchema),
    access: filled(AccessSchema),
    masking: filled(
      withExtra<{
        /** Content of hash_key_file, read at load. */
        readonly hash_key?: string;
      }>()(
        Type.Object(
          {
            redaction: filled(
              Type.String({
                minLength: 1,
                maxLength: 64,
                default: '***',
                description: 'Text that replaces a redacted value.',
              }),
            ),
            mrn_formats: filled(
              Type.Array(
                Type.String({
                  pattern: '^[^\\s]*#[^\\s]*$',
                  maxLength: 64,
                  description:
                    'A medical record number format: # is a digit, @ a letter, anything else itself (letters in either case).',
                }),
                {
                  default: [],
                  maxItems: 32,
                  description:
                    "Medical record number formats the content detectors also recognise, e.g. 'MRN-######' or '@@#######'.",
                },
              ),
            ),
            identifier_formats: filled(
              Type.Array(
                Type.String({
                  pattern: '^[^\\s]*#[^\\s]*$',
                  maxLength: 64,
                  description:
                    'An identifier format: # is a digit, @ a letter, anything else itself (letters in either case).',
                }),
                {
                  default: [],
                  maxItems: 32,
                  description:
                    "Other identifier formats the content detectors recognise (Safe Harbor: health plan beneficiary, account, certificate or licence, device serial and licence plate numbers), e.g. 'HPB-#########'.",
                },
              ),
            ),
            hash_key_file: Type.Optional(
              secretFile(
                'Key (at least 32 bytes) of the keyed HMAC-SHA-256 behind the hash mask; required when a role uses hash.',
              ),
            ),
          },
          { ...strict, default: {}, description: 'PHI masking of result rows (roles.*.masks).' },
        ),
      ),
    ),
    databases: nameMap(DatabaseSchema, {
      pattern: PG_NAME_PATTERN,
      keyLabel: 'database',
      keyHint: PG_NAME_HINT,
      minProperties: 1,
      description: "Routable databases, by the name clients send as the startup parameter 'database'.",
    }),
    users: filled(
      nameMap(UserSchema, {
        pattern: PG_NAME_PATTERN,
        keyLabel: 'user',
        keyHint: PG_NAME_HINT,
        default: {},
        description: "Client identities, by the name clients send as the startup parameter 'user'.",
      }),
    ),
    roles: filled(
      nameMap(RoleSchema, {
        pattern: ROLE_NAME_PATTERN,
        keyLabel: 'role',
        keyHint: 'a letter or _, then letters, digits, _ or -; at most 63 characters',
        default: {},
        description: 'Roles granted to users.',
      }),
    ),
  },
  { ...strict, description: 'pgwarden configuration.' },
);

/** The config file as written (keys with defaults may be missing, durations may be strings). */
export type ConfigInput = Static<typeof ConfigSchema>;
/** The config after loading: defaults applied, durations in milliseconds, sizes in bytes, paths absolute, secrets read. */
export type PgwardenConfig = Resolved<typeof ConfigSchema>;
export type DatabaseConfig = PgwardenConfig['databases'][string];
export type UpstreamConfig = DatabaseConfig['upstream'];
export type PoolConfig = DatabaseConfig['pool'];
export type UserConfig = PgwardenConfig['users'][string];
export type RoleConfig = PgwardenConfig['roles'][string];
export type ServerTlsConfig = NonNullable<PgwardenConfig['tls']>;
export type AccessConfig = PgwardenConfig['access'];

export const CONFIG_SCHEMA_ID = 'urn:pgwarden:config';

/** The published JSON Schema (docs/config.schema.json): the TypeBox schema plus $schema, $id and title. */
export function configJsonSchema(): Record<string, unknown> {
  // JSON round trip drops the symbol-keyed annotations and TypeBox's own symbols.
  const body = JSON.parse(JSON.stringify(ConfigSchema)) as Record<string, unknown>;
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    $id: CONFIG_SCHEMA_ID,
    title: 'pgwarden configuration',
    ...body,
  };
}
