import type { Config } from '../config/schema.js'
import type { Logger } from '../logger.js'
import { createDb, type Db } from './postgres.js'
import { createRedisPrefixCache, type PrefixCache } from './prefix-cache.js'

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
    poolSize: 2,
    connectTimeoutMs: Math.max(config.database.connectTimeoutMs, 5000),
    queryTimeoutMs: Math.max(config.database.queryTimeoutMs, 30_000),
    applicationName: 'hg-sidecar-cli'
  })
  const cache = config.redis.url === null
    ? null
    : createRedisPrefixCache({
      url: config.redis.url,
      keyPrefix: config.redis.keyPrefix,
      ttlSeconds: config.auth.prefixCacheTtlSeconds,
      commandTimeoutMs: 1000,
      onError: err => log?.warn({ err: { message: err.message } }, 'redis unavailable')
    })
  return {
    db,
    cache,
    async close () {
      await Promise.allSettled([db.close(), cache?.close()])
    }
  }
}
