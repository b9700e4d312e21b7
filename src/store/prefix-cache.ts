import { waitRedisReady, type RedisClient, type RedisHealth } from './redis.js'

/** One PAT that shares a prefix: the only thing ever cached outside PostgreSQL. */
export interface Candidate {
  id: string
  hash: string
}

export type CacheResult = 'hit' | 'miss' | 'error'
export type CacheStatus = 'ok' | 'degraded' | 'disabled'

export interface PrefixCache {
  readonly kind: 'redis' | 'memory'
  /** Candidates for a prefix, or null on a miss or any cache failure (never throws). */
  get(prefix: string): Promise<Candidate[] | null>
  set(prefix: string, candidates: Candidate[]): Promise<void>
  invalidate(prefix: string): Promise<void>
  status(): CacheStatus
  onResult(observer: (result: CacheResult) => void): void
  /** Resolves true once connected, false after `ms` (short-lived processes: the CLI). */
  waitReady(ms: number): Promise<boolean>
  /** Releases what the cache itself holds (not a Redis client it was given). */
  close(): Promise<void>
}

export interface RedisCacheOptions {
  /** Owned by the caller, which closes it (src/store/redis.ts). */
  client: RedisClient
  /** Every command's outcome goes here: readiness and the warning log read it. */
  health: RedisHealth
  keyPrefix: string
  ttlSeconds: number
}

function encode (candidates: Candidate[]): string {
  return JSON.stringify(candidates.map(c => [c.id, c.hash]))
}

function decode (text: string): Candidate[] | null {
  try {
    const raw: unknown = JSON.parse(text)
    if (!Array.isArray(raw)) return null
    const out: Candidate[] = []
    for (const item of raw) {
      if (!Array.isArray(item) || typeof item[0] !== 'string' || typeof item[1] !== 'string') return null
      out.push({ id: item[0], hash: item[1] })
    }
    return out
  } catch {
    return null
  }
}

const NOT_READY = Object.assign(new Error('Redis is not connected'), { code: 'NOTREADY' })

/**
 * The prefix cache in Redis (standalone, Sentinel or Cluster). One key per
 * prefix and single-key commands only, so a cluster needs no hash tags.
 */
export function createRedisPrefixCache (opts: RedisCacheOptions): PrefixCache {
  const { client, health } = opts
  const observers: Array<(r: CacheResult) => void> = []
  const emit = (r: CacheResult): void => { for (const o of observers) o(r) }
  const key = (prefix: string): string => `${opts.keyPrefix}pat:prefix:${prefix}`
  const ready = (): boolean => {
    if (client.status === 'ready') return true
    health.record(NOT_READY)
    return false
  }

  return {
    kind: 'redis',
    async get (prefix) {
      if (!ready()) {
        emit('error')
        return null
      }
      try {
        const text = await client.get(key(prefix))
        health.record()
        if (text === null) {
          emit('miss')
          return null
        }
        const list = decode(text)
        emit(list === null ? 'error' : 'hit')
        return list
      } catch (err) {
        health.record(err)
        emit('error')
        return null
      }
    },
    async set (prefix, candidates) {
      if (!ready()) return
      try {
        await client.set(key(prefix), encode(candidates), 'EX', opts.ttlSeconds)
        health.record()
      } catch (err) {
        health.record(err)
      }
    },
    async invalidate (prefix) {
      if (!ready()) return
      try {
        await client.del(key(prefix))
        health.record()
      } catch (err) {
        health.record(err)
      }
    },
    status: () => client.status === 'ready' && !health.failing() ? 'ok' : 'degraded',
    onResult (o) { observers.push(o) },
    waitReady: ms => waitRedisReady(client, ms),
    async close () {}
  }
}

export interface MemoryCacheOptions {
  ttlSeconds: number
  maxEntries: number
  now?: () => number
}

/** The in-process cache used when no REDIS_URL is set: same TTL semantics, bounded. */
export function createMemoryPrefixCache (opts: MemoryCacheOptions): PrefixCache {
  const now = opts.now ?? Date.now
  const map = new Map<string, { list: Candidate[], expires: number }>()
  const observers: Array<(r: CacheResult) => void> = []
  const emit = (r: CacheResult): void => { for (const o of observers) o(r) }
  return {
    kind: 'memory',
    async get (prefix) {
      const e = map.get(prefix)
      if (e === undefined || e.expires <= now()) {
        if (e !== undefined) map.delete(prefix)
        emit('miss')
        return null
      }
      emit('hit')
      return e.list
    },
    async set (prefix, list) {
      map.delete(prefix)
      while (map.size >= opts.maxEntries) {
        const oldest = map.keys().next()
        if (oldest.done === true) break
        map.delete(oldest.value)
      }
      map.set(prefix, { list, expires: now() + opts.ttlSeconds * 1000 })
    },
    async invalidate (prefix) {
      map.delete(prefix)
    },
    status: () => 'disabled',
    onResult (o) { observers.push(o) },
    waitReady: async () => true,
    async close () { map.clear() }
  }
}
