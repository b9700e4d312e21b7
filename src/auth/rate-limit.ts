import { TtlMap } from '../lib/ttl-map.js'
import type { RedisClient, RedisHealth } from '../store/redis.js'

/** What an attempt may do, decided before any of its work (docs/DESIGN.md §2.2). */
export interface Gate {
  /** Seconds the client address is blocked for; 0: go on. */
  client: number
  /** Seconds the prefix is blocked for; 0: go on. While blocked, no untagged row of the prefix is walked with bcrypt. */
  prefix: number
}

/**
 * Failed-authentication limiter (docs/DESIGN.md §2.2 and §2 Errors: 429
 * rate_limited): fixed windows per client address and per display prefix. An
 * attempt is counted when it starts, before its compares, and taken back
 * (`refund`) once it proves good; so N concurrent wrong secrets from one address
 * get at most `maxFailures` attempts under way, whatever their compares cost.
 */
export interface FailureLimiter {
  readonly enabled: boolean
  /** This process's knowledge, at once: seconds the client is blocked for, 0 when not. */
  blocked(client: string): number
  /**
   * A failure counted once known (no or a malformed credential, a wrong API
   * key). A promise, only with a shared (Redis) counter, that settles once the
   * failure is counted: the refusal waits for it, so the client's next request
   * already sees it (never rejects).
   */
  fail(client: string): Promise<void> | undefined
  /** An attempt starts: one failure counted for the client and for the prefix. A promise only with a shared (Redis) counter. */
  begin(client: string, prefix: string): Gate | Promise<Gate>
  /** The attempt `begin` counted proved good (or failed for no fault of the client's): its failures are taken back. */
  refund(client: string, prefix: string): void
}

export interface LimiterOptions {
  maxFailures: number
  windowSeconds: number
  /** Keys (addresses and prefixes) tracked in process at most; the least recently used are forgotten. */
  maxClients?: number
  now?: () => number
}

const clientKey = (client: string): string => `ip:${client}`
const prefixKey = (prefix: string): string => `prefix:${prefix}`
const OPEN: Gate = { client: 0, prefix: 0 }

interface Window { count: number, resetAt: number }

/** Whole seconds until `ms` from now have passed, at least 1 (a Retry-After). */
const secondsUntil = (ms: number): number => Math.max(1, Math.ceil(ms / 1000))

/** Counts in this process only: each replica counts its own; bounded memory. */
export function createFailureLimiter (opts: LimiterOptions): FailureLimiter {
  const now = opts.now ?? Date.now
  const windowMs = opts.windowSeconds * 1000
  const max = opts.maxFailures
  const enabled = max > 0
  const windows = new TtlMap<string, Window>({ maxEntries: opts.maxClients ?? 100_000, now })

  /** Counts one failure; the seconds the key is blocked for when this one goes beyond the limit. */
  function count (key: string): number {
    const t = now()
    const w = windows.get(key, t)
    if (w === undefined) {
      windows.set(key, { count: 1, resetAt: t + windowMs }, windowMs, t)
      return max < 1 ? opts.windowSeconds : 0
    }
    w.count++
    return w.count > max ? secondsUntil(w.resetAt - t) : 0
  }

  function blocked (key: string): number {
    const t = now()
    const w = windows.get(key, t)
    return w !== undefined && w.count >= max ? secondsUntil(w.resetAt - t) : 0
  }

  function refund (key: string): void {
    const w = windows.get(key)
    if (w !== undefined && w.count > 0) w.count--
  }

  return {
    enabled,
    blocked: client => enabled ? blocked(clientKey(client)) : 0,
    fail (client) {
      if (enabled) count(clientKey(client))
      return undefined
    },
    begin (client, prefix) {
      if (!enabled) return OPEN
      return { client: count(clientKey(client)), prefix: count(prefixKey(prefix)) }
    },
    refund (client, prefix) {
      if (!enabled) return
      refund(clientKey(client))
      refund(prefixKey(prefix))
    }
  }
}

export interface RedisLimiterOptions extends LimiterOptions {
  client: RedisClient
  health: RedisHealth
  keyPrefix: string
}

// One key per script (a Redis Cluster routes each call to the key's node).
// INCR, and the window's expiry set by its first failure (repaired if lost).
const HIT = `local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) ttl = tonumber(ARGV[1]) end
return {n, ttl}`
// Never below zero, and never a key without expiry: nothing when the window is gone.
const REFUND = `local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 0 then return redis.call('DECR', KEYS[1]) end
return 0`

interface ScriptedClient {
  hgLimitHit(key: string, windowMs: number): Promise<[number, number]>
  hgLimitRefund(key: string): Promise<number>
}

/**
 * The counters in Redis, shared by every replica (docs/DESIGN.md §8): one key
 * per address or prefix, `<keyPrefix>limit:ip:<address>` /
 * `<keyPrefix>limit:prefix:<prefix>`, expiring with the window; single-key
 * scripts, so standalone, Sentinel and Cluster alike. Redis down, slow or
 * failing: this process counts in memory meanwhile (never a request failed
 * because of Redis). What Redis answered about a blocked key is kept in memory
 * until the window ends, so a blocked client is refused without a round trip.
 */
export function createRedisFailureLimiter (opts: RedisLimiterOptions): FailureLimiter {
  const now = opts.now ?? Date.now
  const max = opts.maxFailures
  const enabled = max > 0
  const windowMs = opts.windowSeconds * 1000
  const { client, health } = opts
  const local = createFailureLimiter(opts)
  // Keys Redis said are at their limit -> when their window ends.
  const known = new TtlMap<string, number>({ maxEntries: opts.maxClients ?? 100_000, now })
  client.defineCommand('hgLimitHit', { numberOfKeys: 1, lua: HIT })
  client.defineCommand('hgLimitRefund', { numberOfKeys: 1, lua: REFUND })
  const scripts = client as unknown as ScriptedClient
  const redisKey = (key: string): string => `${opts.keyPrefix}limit:${key}`

  function knownBlocked (key: string): number {
    const t = now()
    const until = known.get(key, t)
    return until === undefined ? 0 : secondsUntil(until - t)
  }

  /** Counts one failure in Redis; the seconds blocked when beyond the limit. Falls back to `fallback` on any failure. */
  async function hit (key: string, fallback: () => number): Promise<number> {
    if (client.status !== 'ready') return fallback()
    try {
      const [n, ttl] = await scripts.hgLimitHit(redisKey(key), windowMs)
      health.record()
      const t = now()
      if (n >= max) known.set(key, t + ttl, ttl, t)
      return n > max ? secondsUntil(ttl) : 0
    } catch (err) {
      health.record(err)
      return fallback()
    }
  }

  function refund (key: string, fallback: () => void): void {
    known.delete(key)
    if (client.status !== 'ready') {
      fallback()
      return
    }
    scripts.hgLimitRefund(redisKey(key)).then(() => health.record(), (err: unknown) => {
      health.record(err)
      fallback()
    })
  }

  return {
    enabled,
    blocked (c) {
      if (!enabled) return 0
      return Math.max(knownBlocked(clientKey(c)), local.blocked(c))
    },
    fail (c) {
      if (!enabled || knownBlocked(clientKey(c)) > 0) return undefined
      return hit(clientKey(c), () => { local.fail(c); return 0 }).then(() => undefined)
    },
    begin (c, prefix) {
      if (!enabled) return OPEN
      const wait = knownBlocked(clientKey(c))
      if (wait > 0) return { client: wait, prefix: knownBlocked(prefixKey(prefix)) }
      let fallback: Gate | null = null
      const counted = (): Gate => {
        fallback ??= local.begin(c, prefix) as Gate
        return fallback
      }
      return Promise.all([
        hit(clientKey(c), () => counted().client),
        hit(prefixKey(prefix), () => counted().prefix)
      ]).then(([client, prefixWait]) => ({ client, prefix: prefixWait }))
    },
    refund (c, prefix) {
      if (!enabled) return
      refund(clientKey(c), () => local.refund(c, prefix))
      refund(prefixKey(prefix), () => {})
    }
  }
}
