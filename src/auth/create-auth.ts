import type { Config } from '../config/schema.js'
import type { Db } from '../store/postgres.js'
import type { PrefixCache } from '../store/prefix-cache.js'
import type { RedisClient, RedisHealth } from '../store/redis.js'
import type { Logger } from '../logger.js'
import { apiKeyStates, patPrefixEntry, patStates, patTagCandidates, tagPat, touchApiKeys, touchPats } from '../store/queries.js'
import { createBatcher } from '../store/batcher.js'
import { createApiKeyAuthenticator } from './authenticators/api-key.js'
import { createPatAuthenticator } from './authenticators/pat.js'
import { createBcryptPool, type BcryptPool } from './bcrypt-pool.js'
import { createLastUsedRecorder, type LastUsedRecorder } from './last-used.js'
import { createMemo, type Memo } from './memo.js'
import { createPipeline, type Pipeline, type PipelineDeps } from './pipeline.js'
import { createPolicy } from './policy.js'
import { createRoleTable, type RoleTable } from './principal.js'
import { createFailureLimiter, createRedisFailureLimiter, type FailureLimiter } from './rate-limit.js'

export interface Auth {
  pipeline: Pipeline
  /** The authenticators the pipeline uses: leak reports verify with the very same. */
  authenticatePat: PipelineDeps['authenticatePat']
  authenticateApiKey: PipelineDeps['authenticateApiKey']
  memo: Memo
  bcrypt: BcryptPool
  roles: RoleTable
  lastUsed: LastUsedRecorder
  limiter: FailureLimiter
}

export interface AuthDeps {
  log: Logger
  db: Db
  cache: PrefixCache
  /** The shared Redis when configured: the failed-auth counters live there (docs/DESIGN.md §8). */
  redis?: { client: RedisClient, health: RedisHealth, keyPrefix: string } | null
  /** Paths the sidecar answers itself (self-service): authenticated, never forwarded. */
  localPrefixes: readonly string[]
  /** Metrics hooks (ops/metrics.ts fits this shape). */
  observe?: {
    memo(result: 'hit' | 'miss' | 'stale'): void
    bcrypt(seconds: number): void
    bcryptRejected(): void
    lastUsedWrites(kind: string, count: number): void
    verifyShared(): void
    memoRefresh(result: 'renewed' | 'failed' | 'dropped' | 'error'): void
  }
  /** The memo's clock (ms) and random source (its TTL jitter): injected by tests. */
  now?: () => number
  random?: () => number
  /** The bcrypt compare (BcryptPoolOptions.compare): injected by tests. */
  bcryptCompare?: (secret: string, hash: string) => Promise<boolean>
}

/** The access pipeline and its parts, built from the config (docs/DESIGN.md §2). */
export function createAuth (config: Config, deps: AuthDeps): Auth {
  const { db, cache, observe } = deps
  const memo = createMemo({
    ttlSeconds: config.auth.memoTtlSeconds,
    maxEntries: config.auth.memoMaxEntries,
    negativeTtlSeconds: config.auth.negativeMemoTtlSeconds,
    negativeMaxEntries: config.auth.negativeMemoMaxEntries,
    now: deps.now,
    random: deps.random
  })
  const bcrypt = createBcryptPool({ concurrency: config.auth.bcryptConcurrency, queueSize: config.auth.bcryptQueueSize, compare: deps.bcryptCompare })
  if (observe !== undefined) {
    bcrypt.onCompare(observe.bcrypt)
    bcrypt.onReject(observe.bcryptRejected)
  }
  const roles = createRoleTable(config.roles)
  const inFlight = { maxInFlight: config.database.stateQueriesInFlight }
  const authenticatePat = createPatAuthenticator({
    memo,
    bcrypt,
    cache,
    roles,
    loadPrefix: prefix => patPrefixEntry(db, prefix),
    tagged: createBatcher(tags => patTagCandidates(db, tags), inFlight),
    tagRow: (id, tag) => tagPat(db, id, tag),
    onTagError: err => deps.log.warn({ err }, 'writing a lookup tag failed; the token stays untagged'),
    states: createBatcher(ids => patStates(db, ids), inFlight),
    onMemo: observe?.memo,
    onShared: observe?.verifyShared,
    onRefresh: observe?.memoRefresh
  })
  const authenticateApiKey = createApiKeyAuthenticator({
    roles,
    states: createBatcher(hashes => apiKeyStates(db, hashes.map(h => Buffer.from(h, 'hex'))), inFlight)
  })
  // docs/DESIGN.md §2.2: in Redis when configured, so the limit holds across replicas.
  const limiter = deps.redis === undefined || deps.redis === null
    ? createFailureLimiter({ ...config.auth.rateLimit, now: deps.now })
    : createRedisFailureLimiter({ ...config.auth.rateLimit, ...deps.redis, now: deps.now })
  const pipeline = createPipeline({
    policy: createPolicy(config, deps.localPrefixes),
    limiter,
    memo: { key: memo.key, verified: key => memo.enabled ? memo.get(key) : undefined },
    apiKeys: config.auth.apiKeys,
    authenticatePat,
    authenticateApiKey
  })
  // docs/DESIGN.md §2 step 9: off the request path, coalesced, batched.
  const lastUsed = createLastUsedRecorder({
    flushIntervalMs: config.auth.lastUsed.flushIntervalMs,
    minIntervalMs: config.auth.lastUsed.minIntervalSeconds * 1000,
    write: async (kind, ids, at) => {
      await (kind === 'pat' ? touchPats(db, ids, at) : touchApiKeys(db, ids, at))
      observe?.lastUsedWrites(kind, ids.length)
    },
    onError: err => deps.log.warn({ err }, 'last_used_at write failed')
  })
  return { pipeline, authenticatePat, authenticateApiKey, memo, bcrypt, roles, lastUsed, limiter }
}
