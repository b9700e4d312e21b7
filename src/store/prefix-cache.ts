import { TtlMap } from '../lib/ttl-map.js'
import { waitRedisReady, type RedisClient, type RedisHealth } from './redis.js'

/** One PAT a lookup may match: the only thing ever cached outside PostgreSQL. */
export interface Candidate {
  id: string
  hash: string
}

/** What is cached per display prefix: the rows still without a lookup tag, and whether any row has one. */
export interface PrefixEntry {
  /** Some row under the prefix has a lookup tag: a presented PAT's tag is worth looking up. */
  tagged: boolean
  /** Rows without a tag (imported, or minted before migration 3): walked with bcrypt. */
  untagged: Candidate[]
}

export type CacheResult = 'hit' | 'miss' | 'error'
export type CacheStatus = 'ok' | 'degraded' | 'disabled'

/**
 * The lookup cache (docs/DESIGN.md §2 step 4): display prefix -> PrefixEntry
 * (whether the prefix has tagged rows, and its untagged candidates). An empty
 * entry (an unknown prefix) is cached too, for `negativeTtlSeconds`: a flood of
 * unknown prefixes costs no PostgreSQL query per request (docs/DESIGN.md §2.2).
 * A lookup tag's rows are read from PostgreSQL directly (one indexed, batched
 * query, like an API key's SHA-256), never cached.
 */
export interface PrefixCache {
  readonly kind: 'redis' | 'memory'
  /** The prefix's entry, or null on a miss or any cache failure (never throws). */
  getPrefix(prefix: string): Promise<PrefixEntry | null>
  setPrefix(prefix: string, entry: PrefixEntry): Promise<void>
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
  /** TTL of empty entries (default 10). */
  negativeTtlSeconds?: number
  /** How long an entry of a prefix with tagged rows is also kept in process (ms; default 5000, 0 = never). */
  nearTtlMs?: number
}

const isEmptyEntry = (e: PrefixEntry): boolean => !e.tagged && e.untagged.length === 0

function encodeList (candidates: Candidate[]): unknown[] {
  return candidates.map(c => [c.id, c.hash])
}

function decodeList (raw: unknown): Candidate[] | null {
  if (!Array.isArray(raw)) return null
  const out: Candidate[] = []
  for (const item of raw) {
    if (!Array.isArray(item) || typeof item[0] !== 'string' || typeof item[1] !== 'string') return null
    out.push({ id: item[0], hash: item[1] })
  }
  return out
}

function parse (text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

/** `{"t": tagged, "c": [[id, hash], ...]}`; anything else (a value of an older version included) is no entry. */
function decodeEntry (text: string): PrefixEntry | null {
  const raw = parse(text)
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return null
  const { t, c } = raw as { t?: unknown, c?: unknown }
  const untagged = decodeList(c)
  return typeof t === 'boolean' && untagged !== null ? { tagged: t, untagged } : null
}

const NOT_READY = Object.assign(new Error('Redis is not connected'), { code: 'NOTREADY' })

/**
 * The lookup cache in Redis (standalone, Sentinel or Cluster). One key per
 * prefix and single-key commands only, so a cluster needs no hash tags.
 *
 * Entries of prefixes that have tagged rows are also kept in process for a few
 * seconds (a near cache, at most 8,192: there are 4,096 PAT prefixes), so a
 * flood of guesses under live prefixes costs no Redis round trip. Only such
 * entries: whatever another replica did since (a token minted, a row tagged)
 * they cannot turn a valid credential away, because its tag is looked up in
 * PostgreSQL regardless; at worst an untagged row tagged since is compared
 * once more. An unknown prefix is never kept there (a token minted under it
 * must work at once on every replica).
 */
export function createRedisPrefixCache (opts: RedisCacheOptions): PrefixCache {
  const { client, health } = opts
  const negativeTtl = opts.negativeTtlSeconds ?? 10
  const nearTtlMs = opts.nearTtlMs ?? 5000
  const near = new TtlMap<string, PrefixEntry>({ maxEntries: 8192 })
  const keepNear = (prefix: string, entry: PrefixEntry): void => {
    if (entry.tagged) near.set(prefix, entry, nearTtlMs)
    else near.delete(prefix)
  }
  const observers: Array<(r: CacheResult) => void> = []
  const emit = (r: CacheResult): void => { for (const o of observers) o(r) }
  const prefixKey = (prefix: string): string => `${opts.keyPrefix}pat:prefix:${prefix}`
  const ready = (): boolean => {
    if (client.status === 'ready') return true
    health.record(NOT_READY)
    return false
  }

  async function get<T> (key: string, decode: (text: string) => T | null): Promise<T | null> {
    if (!ready()) {
      emit('error')
      return null
    }
    try {
      const text = await client.get(key)
      health.record()
      if (text === null) {
        emit('miss')
        return null
      }
      const value = decode(text)
      emit(value === null ? 'error' : 'hit')
      return value
    } catch (err) {
      health.record(err)
      emit('error')
      return null
    }
  }

  async function set (key: string, text: string, ttl: number): Promise<void> {
    if (!ready()) return
    try {
      await client.set(key, text, 'EX', ttl)
      health.record()
    } catch (err) {
      health.record(err)
    }
  }

  async function del (key: string): Promise<void> {
    if (!ready()) return
    try {
      await client.del(key)
      health.record()
    } catch (err) {
      health.record(err)
    }
  }

  return {
    kind: 'redis',
    async getPrefix (prefix) {
      const kept = near.get(prefix)
      if (kept !== undefined) {
        emit('hit')
        return kept
      }
      const entry = await get(prefixKey(prefix), decodeEntry)
      if (entry !== null) keepNear(prefix, entry)
      return entry
    },
    async setPrefix (prefix, entry) {
      keepNear(prefix, entry)
      await set(prefixKey(prefix), JSON.stringify({ t: entry.tagged, c: encodeList(entry.untagged) }), isEmptyEntry(entry) ? negativeTtl : opts.ttlSeconds)
    },
    async invalidate (prefix) {
      near.delete(prefix)
      await del(prefixKey(prefix))
    },
    status: () => client.status === 'ready' && !health.failing() ? 'ok' : 'degraded',
    onResult (o) { observers.push(o) },
    waitReady: ms => waitRedisReady(client, ms),
    async close () { near.clear() }
  }
}

export interface MemoryCacheOptions {
  ttlSeconds: number
  /** Bound of the live entries, and separately of the empty ones. */
  maxEntries: number
  /** TTL of empty entries (default 10). */
  negativeTtlSeconds?: number
  now?: () => number
}

/** The in-process cache used when no REDIS_URL is set: same TTL semantics, bounded. */
export function createMemoryPrefixCache (opts: MemoryCacheOptions): PrefixCache {
  const now = opts.now ?? Date.now
  const ttlMs = opts.ttlSeconds * 1000
  const negativeTtlMs = (opts.negativeTtlSeconds ?? 10) * 1000
  const live = new TtlMap<string, PrefixEntry>({ maxEntries: opts.maxEntries, now })
  const empty = new TtlMap<string, PrefixEntry>({ maxEntries: opts.maxEntries, now })
  const observers: Array<(r: CacheResult) => void> = []
  const emit = (r: CacheResult): void => { for (const o of observers) o(r) }
  function get (key: string): PrefixEntry | null {
    const value = live.get(key) ?? empty.get(key)
    emit(value === undefined ? 'miss' : 'hit')
    return value ?? null
  }
  function set (key: string, value: PrefixEntry, isEmpty: boolean): void {
    live.delete(key)
    empty.delete(key)
    if (isEmpty) empty.set(key, value, negativeTtlMs)
    else live.set(key, value, ttlMs)
  }
  return {
    kind: 'memory',
    getPrefix: async prefix => get(prefix),
    async setPrefix (prefix, entry) { set(prefix, entry, isEmptyEntry(entry)) },
    async invalidate (prefix) {
      live.delete(prefix)
      empty.delete(prefix)
    },
    status: () => 'disabled',
    onResult (o) { observers.push(o) },
    waitReady: async () => true,
    async close () {
      live.clear()
      empty.clear()
    }
  }
}
