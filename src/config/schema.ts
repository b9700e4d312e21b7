import { Type, type Static } from '@sinclair/typebox'

const Port = Type.Integer({ minimum: 0, maximum: 65535 })
const PositiveInt = Type.Integer({ minimum: 1 })
const NonNegativeInt = Type.Integer({ minimum: 0 })
const HttpUrl = Type.String({ pattern: '^https?://[^\\s]+$' })
const PermissionName = Type.String({ pattern: '^[a-z][a-z0-9_-]*(:[a-z0-9_-]+)*$', maxLength: 64 })
/** `host:port`, `[v6]:port`: a Redis Sentinel or Cluster seed node. */
const HostPort = Type.String({ pattern: '^(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9_.-]+):[0-9]{1,5}$' })
const NullableString = Type.Union([Type.String({ minLength: 1 }), Type.Null()])
const Method = Type.Union(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'TRACE'].map(m => Type.Literal(m)))

export const RoleSchema = Type.Object({
  name: Type.String({ pattern: '^[a-z][a-z0-9_-]*$', maxLength: 32 }),
  permissions: Type.Array(PermissionName, { uniqueItems: true })
}, { additionalProperties: false })

export const RuleSchema = Type.Object({
  methods: Type.Optional(Type.Array(Method, { minItems: 1, uniqueItems: true })),
  prefix: Type.Optional(Type.String({ pattern: '^/' })),
  permission: Type.Optional(PermissionName),
  public: Type.Optional(Type.Boolean())
}, { additionalProperties: false })

export const RouteSchema = Type.Object({
  prefix: Type.String({ pattern: '^/' }),
  upstream: Type.Optional(HttpUrl),
  public: Type.Optional(Type.Boolean()),
  rules: Type.Optional(Type.Array(RuleSchema))
}, { additionalProperties: false })

export const ConfigSchema = Type.Object({
  server: Type.Object({
    host: Type.String({ minLength: 1 }),
    port: Port,
    opsPort: Port,
    adminHost: Type.String({ minLength: 1 }),
    adminPort: Port,
    /**
     * Proxies in front whose X-Forwarded-For is believed (docs/DESIGN.md §2.1):
     * false, a hop count (true = 1), or addresses/CIDRs, comma-separated.
     */
    trustProxy: Type.Union([Type.Boolean(), Type.Integer({ minimum: 0, maximum: 16 }), Type.String({ pattern: '^[0-9A-Fa-f.:/]+(\\s*,\\s*[0-9A-Fa-f.:/]+)*$' })]),
    shutdownGraceMs: NonNegativeInt,
    /** Concurrent connections on the proxy port; more are closed at once (docs/DESIGN.md §2.1). */
    maxConnections: PositiveInt,
    /** The same cap for the ops port and for the admin port, each. */
    maxInternalConnections: PositiveInt,
    /** Request headers must be complete this long after the connection's request started (408); all three listeners. */
    headersTimeoutMs: Type.Integer({ minimum: 1000 }),
    /** A request body that sends nothing this long while the sidecar waits for it is cut (408); 0 disables. */
    bodyIdleTimeoutMs: NonNegativeInt,
    /** The slowest average a request body may arrive at, after its first 2 s of waiting; 0 disables. */
    bodyMinBytesPerSecond: NonNegativeInt,
    /** Request bodies still arriving from one client address at once (429 beyond); 0 disables. */
    maxBodiesPerClient: NonNegativeInt,
    overload: Type.Object({
      maxEventLoopDelayMs: NonNegativeInt,
      maxEventLoopUtilization: Type.Number({ minimum: 0, maximum: 1 }),
      maxHeapUsedBytes: NonNegativeInt,
      maxRssBytes: NonNegativeInt
    }, { additionalProperties: false })
  }, { additionalProperties: false }),
  upstream: Type.Object({
    url: Type.Union([HttpUrl, Type.Null()]),
    timeoutMs: PositiveInt,
    connections: PositiveInt,
    /** Headers of the stripped re-targeting/hop-by-hop lists that this upstream needs (lower case). */
    allowHeaders: Type.Array(Type.String({ pattern: '^[a-z0-9-]+$' }), { uniqueItems: true }),
    readinessCheck: Type.Boolean()
  }, { additionalProperties: false }),
  database: Type.Object({
    url: Type.Union([Type.String({ pattern: '^postgres(ql)?://' }), Type.Null()]),
    /** Used by `migrate` and migrate-on-start instead of url (a direct or session-mode connection). */
    migrateUrl: Type.Union([Type.String({ pattern: '^postgres(ql)?://' }), Type.Null()]),
    pooler: Type.Union([Type.Literal('none'), Type.Literal('transaction')]),
    dataDir: Type.String({ minLength: 1 }),
    poolSize: PositiveInt,
    stateQueriesInFlight: NonNegativeInt,
    connectTimeoutMs: PositiveInt,
    queryTimeoutMs: PositiveInt,
    migrateOnStart: Type.Boolean()
  }, { additionalProperties: false }),
  redis: Type.Object({
    url: Type.Union([Type.String({ pattern: '^rediss?://' }), Type.Null()]),
    sentinels: Type.Array(HostPort),
    sentinelName: NullableString,
    sentinelUsername: NullableString,
    sentinelPassword: NullableString,
    clusterNodes: Type.Array(HostPort),
    /** Sentinel and Cluster data nodes (a standalone URL carries its own). */
    username: NullableString,
    password: NullableString,
    tls: Type.Object({
      enabled: Type.Boolean(),
      caFile: NullableString,
      certFile: NullableString,
      keyFile: NullableString,
      /** The sentinels speak TLS too. */
      sentinels: Type.Boolean()
    }, { additionalProperties: false }),
    keyPrefix: Type.String({ maxLength: 64 }),
    commandTimeoutMs: PositiveInt
  }, { additionalProperties: false }),
  adminToken: Type.Union([Type.String({ minLength: 16 }), Type.Null()]),
  logLevel: Type.Union(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map(l => Type.Literal(l))),
  auth: Type.Object({
    bcryptCost: Type.Integer({ minimum: 4, maximum: 15 }),
    bcryptConcurrency: NonNegativeInt,
    bcryptQueueSize: NonNegativeInt,
    memoTtlSeconds: NonNegativeInt,
    memoMaxEntries: PositiveInt,
    negativeMemoTtlSeconds: NonNegativeInt,
    negativeMemoMaxEntries: PositiveInt,
    prefixCacheTtlSeconds: PositiveInt,
    prefixCacheMaxEntries: PositiveInt,
    negativeCacheTtlSeconds: PositiveInt,
    stripCredentialHeader: Type.Boolean(),
    apiKeys: Type.Union([Type.Literal('validate'), Type.Literal('passthrough'), Type.Literal('reject')]),
    rateLimit: Type.Object({
      maxFailures: NonNegativeInt,
      windowSeconds: PositiveInt
    }, { additionalProperties: false }),
    lastUsed: Type.Object({
      flushIntervalMs: PositiveInt,
      minIntervalSeconds: NonNegativeInt
    }, { additionalProperties: false })
  }, { additionalProperties: false }),
  audit: Type.Object({
    retentionDays: NonNegativeInt,
    retentionSweepIntervalSeconds: PositiveInt,
    useEvents: Type.Object({
      flushIntervalMs: PositiveInt,
      minIntervalSeconds: PositiveInt,
      maxPending: PositiveInt
    }, { additionalProperties: false })
  }, { additionalProperties: false }),
  tokens: Type.Object({
    defaultLifetimeDays: PositiveInt,
    maxLifetimeDays: PositiveInt,
    allowNoExpiry: Type.Boolean()
  }, { additionalProperties: false }),
  assertion: Type.Object({
    enabled: Type.Boolean(),
    issuer: Type.String({ minLength: 1, maxLength: 256 }),
    audience: Type.Union([Type.String({ minLength: 1, maxLength: 256 }), Type.Null()]),
    ttlSeconds: Type.Integer({ minimum: 1, maximum: 300 }),
    keyFile: Type.Union([Type.String({ minLength: 1 }), Type.Null()]),
    cacheMaxEntries: PositiveInt
  }, { additionalProperties: false }),
  roles: Type.Array(RoleSchema, { minItems: 1 }),
  defaultDeny: Type.Boolean(),
  routes: Type.Array(RouteSchema)
}, { additionalProperties: false })

export type Config = Static<typeof ConfigSchema>
export type Role = Static<typeof RoleSchema>
export type Route = Static<typeof RouteSchema>
export type Rule = Static<typeof RuleSchema>

/** What a deployment sets through the environment; each maps onto one config key. */
export const ENV_KEYS = {
  PORT: { key: 'server.port', type: 'int' },
  HOST: { key: 'server.host', type: 'string' },
  OPS_PORT: { key: 'server.opsPort', type: 'int' },
  ADMIN_PORT: { key: 'server.adminPort', type: 'int' },
  ADMIN_HOST: { key: 'server.adminHost', type: 'string' },
  TRUST_PROXY: { key: 'server.trustProxy', type: 'trust' },
  SHUTDOWN_GRACE_MS: { key: 'server.shutdownGraceMs', type: 'int' },
  MAX_CONNECTIONS: { key: 'server.maxConnections', type: 'int' },
  MAX_INTERNAL_CONNECTIONS: { key: 'server.maxInternalConnections', type: 'int' },
  HEADERS_TIMEOUT_MS: { key: 'server.headersTimeoutMs', type: 'int' },
  BODY_IDLE_TIMEOUT_MS: { key: 'server.bodyIdleTimeoutMs', type: 'int' },
  BODY_MIN_BYTES_PER_SECOND: { key: 'server.bodyMinBytesPerSecond', type: 'int' },
  MAX_BODIES_PER_CLIENT: { key: 'server.maxBodiesPerClient', type: 'int' },
  UPSTREAM_URL: { key: 'upstream.url', type: 'string' },
  UPSTREAM_TIMEOUT_MS: { key: 'upstream.timeoutMs', type: 'int' },
  UPSTREAM_ALLOW_HEADERS: { key: 'upstream.allowHeaders', type: 'list' },
  UPSTREAM_READINESS_CHECK: { key: 'upstream.readinessCheck', type: 'bool' },
  DATABASE_URL: { key: 'database.url', type: 'string' },
  DATA_DIR: { key: 'database.dataDir', type: 'string' },
  DATABASE_POOLER: { key: 'database.pooler', type: 'string' },
  MIGRATE_DATABASE_URL: { key: 'database.migrateUrl', type: 'string' },
  DB_POOL_SIZE: { key: 'database.poolSize', type: 'int' },
  MIGRATE_ON_START: { key: 'database.migrateOnStart', type: 'bool' },
  REDIS_URL: { key: 'redis.url', type: 'string' },
  REDIS_SENTINELS: { key: 'redis.sentinels', type: 'list' },
  REDIS_SENTINEL_NAME: { key: 'redis.sentinelName', type: 'string' },
  REDIS_SENTINEL_USERNAME: { key: 'redis.sentinelUsername', type: 'string' },
  REDIS_SENTINEL_PASSWORD: { key: 'redis.sentinelPassword', type: 'string' },
  REDIS_CLUSTER_NODES: { key: 'redis.clusterNodes', type: 'list' },
  REDIS_USERNAME: { key: 'redis.username', type: 'string' },
  REDIS_PASSWORD: { key: 'redis.password', type: 'string' },
  REDIS_TLS: { key: 'redis.tls.enabled', type: 'bool' },
  REDIS_TLS_CA_FILE: { key: 'redis.tls.caFile', type: 'string' },
  REDIS_TLS_CERT_FILE: { key: 'redis.tls.certFile', type: 'string' },
  REDIS_TLS_KEY_FILE: { key: 'redis.tls.keyFile', type: 'string' },
  REDIS_SENTINEL_TLS: { key: 'redis.tls.sentinels', type: 'bool' },
  REDIS_KEY_PREFIX: { key: 'redis.keyPrefix', type: 'string' },
  ADMIN_TOKEN: { key: 'adminToken', type: 'string' },
  LOG_LEVEL: { key: 'logLevel', type: 'string' },
  BCRYPT_COST: { key: 'auth.bcryptCost', type: 'int' },
  BCRYPT_CONCURRENCY: { key: 'auth.bcryptConcurrency', type: 'int' },
  AUDIT_RETENTION_DAYS: { key: 'audit.retentionDays', type: 'int' },
  ASSERTION_ENABLED: { key: 'assertion.enabled', type: 'bool' },
  ASSERTION_AUDIENCE: { key: 'assertion.audience', type: 'string' },
  ASSERTION_KEY_FILE: { key: 'assertion.keyFile', type: 'string' }
} as const

export type EnvKey = keyof typeof ENV_KEYS

/**
 * fastify's trustProxy for the configured value. `true` means the one proxy in
 * front, never "believe anything". A hop count trusts the nearest N addresses
 * whatever they are, so it fits only a sidecar no client reaches but through
 * the proxy; addresses/CIDRs also check who the peer is.
 */
export function trustProxyOption (value: Config['server']['trustProxy']): string | ((addr: string, hop: number) => boolean) | false {
  const hops = value === true ? 1 : value
  if (hops === false || hops === 0) return false
  if (typeof hops === 'number') return (_addr, hop) => hop < hops
  return hops
}
