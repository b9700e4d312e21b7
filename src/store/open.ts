import type { Config } from '../config/schema.js'
import type { Logger } from '../logger.js'
import { startEmbeddedPostgres, type EmbeddedPostgres } from './embedded.js'
import { createDb, type Db } from './postgres.js'
import { createMemoryPrefixCache, createRedisPrefixCache, type PrefixCache } from './prefix-cache.js'
import { closeRedisClient, createRedisClient, createRedisHealth, redisTopology, type RedisClient, type RedisHealth } from './redis.js'

export class DatabaseConfigError extends Error {}

export interface ResolvedDatabase {
  /** The config with database.url filled in (the embedded database's when none was set). */
  config: Config
  embedded: EmbeddedPostgres | null
  close(): Promise<void>
}

/**
 * docs/DESIGN.md §6: no DATABASE_URL -> the embedded PostgreSQL (PGlite). Refused
 * under NODE_ENV=production, where a forgotten variable must not quietly
 * become a toy. The server and the CLI both resolve through here.
 */
export async function resolveDatabase (config: Config, env: NodeJS.ProcessEnv): Promise<ResolvedDatabase> {
  if (config.database.url !== null) return { config, embedded: null, close: async () => {} }
  if (env.NODE_ENV === 'production') {
    throw new DatabaseConfigError('DATABASE_URL is required when NODE_ENV=production (the embedded database is for trying, development and single-replica use)')
  }
  const embedded = await startEmbeddedPostgres(config.database.dataDir)
  // PGlite is one session: one connection. It also runs its queries on this very event
  // loop: event-loop delay and utilization would measure the database too, and shed load
  // that is only the database working.
  const overload = { ...config.server.overload, maxEventLoopDelayMs: 0, maxEventLoopUtilization: 0 }
  return {
    config: { ...config, database: { ...config.database, url: embedded.url, poolSize: 1 }, server: { ...config.server, overload } },
    embedded,
    close: () => embedded.close()
  }
}

export interface Store {
  db: Db
  /** The sidecar's cache: Redis when configured, in-process otherwise. */
  cache: PrefixCache
  /** The Redis client when configured (the failed-auth counters), with its health and key namespace. */
  redis: { client: RedisClient, health: RedisHealth, keyPrefix: string } | null
  close(): Promise<void>
}

export interface OpenStoreOptions {
  log?: Logger
  /** The CLI: a short-lived process, two connections and patient timeouts. */
  cli?: boolean
}

/** PostgreSQL and the prefix cache, for the sidecar and the CLI alike. */
export function openStore (config: Config, opts: OpenStoreOptions = {}): Store {
  if (config.database.url === null) throw new Error('database.url is not resolved (resolveDatabase first)')
  const { log, cli = false } = opts
  const db = createDb({
    url: config.database.url,
    pooler: config.database.pooler,
    poolSize: cli ? 2 : config.database.poolSize,
    connectTimeoutMs: cli ? Math.max(config.database.connectTimeoutMs, 5000) : config.database.connectTimeoutMs,
    queryTimeoutMs: cli ? Math.max(config.database.queryTimeoutMs, 30_000) : config.database.queryTimeoutMs,
    applicationName: cli ? 'hg-sidecar-cli' : undefined,
    onPoolerMismatch: (hint, err) => log?.error({ err }, hint)
  })
  // Standalone, Sentinel or Cluster (docs/DESIGN.md §8): one client, failures counted for readiness.
  const redisHealth = createRedisHealth({
    onWarn: w => log?.warn({ code: w.code, failures: w.failures, commands: w.commands, hint: w.hint, err: w.err }, 'redis failing; PostgreSQL serves the lookups')
  })
  const redis = redisTopology(config.redis) === null
    ? null
    : createRedisClient(cli ? { ...config.redis, commandTimeoutMs: 1000 } : config.redis, err => redisHealth.connectionError(err))
  const cache = redis === null
    ? createMemoryPrefixCache({ ttlSeconds: config.auth.prefixCacheTtlSeconds, maxEntries: config.auth.prefixCacheMaxEntries, negativeTtlSeconds: config.auth.negativeCacheTtlSeconds })
    : createRedisPrefixCache({ client: redis, health: redisHealth, keyPrefix: config.redis.keyPrefix, ttlSeconds: config.auth.prefixCacheTtlSeconds, negativeTtlSeconds: config.auth.negativeCacheTtlSeconds })
  return {
    db,
    cache,
    redis: redis === null ? null : { client: redis, health: redisHealth, keyPrefix: config.redis.keyPrefix },
    async close () {
      await Promise.allSettled([db.close(), cache.close(), redis === null ? undefined : closeRedisClient(redis)])
    }
  }
}
