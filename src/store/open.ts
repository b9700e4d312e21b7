import type { Config } from '../config/schema.js'
import type { Logger } from '../logger.js'
import { createDb, type Db } from './postgres.js'
import { createRedisPrefixCache, type PrefixCache } from './prefix-cache.js'
import { closeRedisClient, createRedisClient, createRedisHealth, redisTopology } from './redis.js'

export interface Store {
  db: Db
  /** Redis when configured; null otherwise (an in-process cache belongs to one process). */
  cache: PrefixCache | null
  close(): Promise<void>
}

/** PostgreSQL and Redis for the CLI's management commands. */
export function openStore (config: Config, log?: Logger): Store {
  if (config.database.url === null) throw new Error('database.url is not resolved')
  const db = createDb({
    url: config.database.url,
    pooler: config.database.pooler,
    poolSize: 2,
    connectTimeoutMs: Math.max(config.database.connectTimeoutMs, 5000),
    queryTimeoutMs: Math.max(config.database.queryTimeoutMs, 30_000),
    applicationName: 'hg-sidecar-cli'
  })
  const warn = (err: Error): void => log?.warn({ err }, 'redis unavailable')
  const client = redisTopology(config.redis) === null ? null : createRedisClient({ ...config.redis, commandTimeoutMs: 1000 }, warn)
  const cache = client === null
    ? null
    : createRedisPrefixCache({
      client,
      health: createRedisHealth({ onWarn: w => log?.warn({ code: w.code, hint: w.hint, err: w.err }, 'redis commands failing') }),
      keyPrefix: config.redis.keyPrefix,
      ttlSeconds: config.auth.prefixCacheTtlSeconds
    })
  return {
    db,
    cache,
    async close () {
      await Promise.allSettled([db.close(), client === null ? undefined : closeRedisClient(client)])
    }
  }
}
