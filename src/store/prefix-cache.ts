import { Redis } from 'ioredis'

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
  close(): Promise<void>
}

export interface RedisCacheOptions {
  url: string
  keyPrefix: string
  ttlSeconds: number
  commandTimeoutMs: number
  onError?: (err: Error) => void
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

export function createRedisPrefixCache (opts: RedisCacheOptions): PrefixCache {
  const observers: Array<(r: CacheResult) => void> = []
  const emit = (r: CacheResult): void => { for (const o of observers) o(r) }
  const client = new Redis(opts.url, {
    // Fail fast instead of queueing while disconnected: PostgreSQL answers then.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: opts.commandTimeoutMs,
    connectTimeout: 2000,
    retryStrategy: times => Math.min(100 * 2 ** Math.min(times, 5), 2000),
    lazyConnect: false
  })
  let lastErrorAt = 0
  client.on('error', (err: Error) => {
    const now = Date.now()
    if (now - lastErrorAt > 10_000) opts.onError?.(err)
    lastErrorAt = now
  })
  const key = (prefix: string): string => `${opts.keyPrefix}pat:prefix:${prefix}`

  return {
    kind: 'redis',
    async get (prefix) {
      if (client.status !== 'ready') {
        emit('error')
        return null
      }
      try {
        const text = await client.get(key(prefix))
        if (text === null) {
          emit('miss')
          return null
        }
        const list = decode(text)
        emit(list === null ? 'error' : 'hit')
        return list
      } catch {
        emit('error')
        return null
      }
    },
    async set (prefix, candidates) {
      if (client.status !== 'ready') return
      try {
        await client.set(key(prefix), encode(candidates), 'EX', opts.ttlSeconds)
      } catch {}
    },
    async invalidate (prefix) {
      if (client.status !== 'ready') return
      try {
        await client.del(key(prefix))
      } catch {}
    },
    status: () => client.status === 'ready' ? 'ok' : 'degraded',
    onResult (o) { observers.push(o) },
    waitReady (ms) {
      if (client.status === 'ready') return Promise.resolve(true)
      return new Promise(resolve => {
        const done = (v: boolean): void => {
          clearTimeout(timer)
          client.off('ready', onReady)
          resolve(v)
        }
        const onReady = (): void => done(true)
        const timer = setTimeout(() => done(false), ms)
        client.once('ready', onReady)
      })
    },
    async close () {
      if (client.status === 'end') return
      try {
        await client.quit()
      } catch {
        client.disconnect()
      }
    }
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
