import { hash, randomBytes } from 'node:crypto'
import { TtlMap } from '../lib/ttl-map.js'

export interface MemoEntry {
  id: string
  hash: string
}

export interface MemoHit extends MemoEntry {
  /** From this time (ms, the memo's clock) a hit should have the entry re-verified in the background. */
  readonly refreshAt: number
}

export interface Memo {
  /** HMAC-SHA256 of the credential under this process's random key; meaningless outside the process. */
  key(credential: string): string
  get(key: string): MemoHit | undefined
  /** Whether the entry is in the last part of its lifetime (refresh ahead). */
  refreshDue(hit: MemoHit): boolean
  /** Remembers a match for a TTL jittered per entry. */
  set(key: string, entry: MemoEntry): void
  delete(key: string): void
  isNegative(key: string): boolean
  setNegative(key: string): void
  readonly size: number
  readonly enabled: boolean
}

export interface MemoOptions {
  ttlSeconds: number
  maxEntries: number
  negativeTtlSeconds: number
  negativeMaxEntries: number
  now?: () => number
  /** Uniform in [0, 1): draws each entry's TTL jitter. */
  random?: () => number
  /** Each entry's TTL is ttlSeconds x (1 +- jitter), uniformly (default 0.1). */
  jitter?: number
  /** Share of an entry's lifetime, at its end, in which a hit schedules a re-verification (default 0.2). */
  refreshAhead?: number
}

/**
 * HMAC-SHA256 (RFC 2104) under a fixed key, base64, from two one-shot hashes.
 * createHmac builds a native Hmac object on every call, and on a path run for
 * every request those objects cost more in garbage collection than the hashing
 * itself; crypto.hash builds none. The key's bytes must be below 0x80 so the
 * inner pad can be a string joined to the message (64 such bytes are still 448
 * random bits). The message is hashed as UTF-8, as createHmac's update does.
 */
export function hmacSha256 (key: Uint8Array): (message: string) => string {
  if (key.length !== 64 || key.some(b => b >= 0x80)) throw new Error('hmacSha256: the key must be 64 bytes, each below 0x80')
  const innerPad = Buffer.from(key.map(b => b ^ 0x36)).toString('latin1')
  // Outer pad, then the inner digest: hashed in place, one buffer for the process.
  const outer = Buffer.alloc(64 + 32)
  for (let i = 0; i < 64; i++) outer[i] = (key[i] as number) ^ 0x5c
  return message => {
    outer.set(hash('sha256', innerPad + message, 'buffer'), 64)
    return hash('sha256', outer, 'base64')
  }
}

/** 64 random bytes below 0x80, for hmacSha256. */
function memoKey (): Buffer {
  const key = randomBytes(64)
  for (let i = 0; i < key.length; i++) key[i] = (key[i] as number) & 0x7f
  return key
}

/**
 * The in-process verification memo (docs/DESIGN.md §2 step 4): HMAC(credential) -> {id, hash}
 * of a past bcrypt match, valid only while the stored hash is unchanged (the caller
 * checks it against the fresh-state row). Failed secrets get a short negative entry.
 * Entries primed together (every active token, right after a start) would expire
 * together and re-verify in one burst: each entry's TTL is jittered, and a hit in
 * the last `refreshAhead` of its lifetime is the caller's cue to renew it in the
 * background (issue 23).
 */
export function createMemo (opts: MemoOptions): Memo {
  const now = opts.now ?? Date.now
  const random = opts.random ?? Math.random
  const jitter = opts.jitter ?? 0.1
  const keep = 1 - (opts.refreshAhead ?? 0.2)
  if (!(jitter >= 0 && jitter < 1) || !(keep > 0 && keep <= 1)) throw new Error('createMemo: jitter must be in [0, 1), refreshAhead in [0, 1)')
  const ttlMs = opts.ttlSeconds * 1000
  const negativeTtlMs = opts.negativeTtlSeconds * 1000
  const hmac = hmacSha256(memoKey())
  // Least recently used evicted, recency to 1 s (a hit moves its entry at most once a second).
  const positive = new TtlMap<string, MemoHit>({ maxEntries: opts.maxEntries, now })
  const negative = new TtlMap<string, true>({ maxEntries: opts.negativeMaxEntries, now })
  return {
    key: hmac,
    get: k => positive.get(k),
    refreshDue: hit => now() >= hit.refreshAt,
    set (k, entry) {
      if (ttlMs <= 0) return
      const t = now()
      const ttl = ttlMs * (1 + jitter * (2 * random() - 1))
      positive.set(k, { id: entry.id, hash: entry.hash, refreshAt: t + ttl * keep }, ttl, t)
    },
    delete: k => positive.delete(k),
    isNegative: k => negative.get(k) === true,
    setNegative: k => negative.set(k, true, negativeTtlMs),
    get size () { return positive.size },
    enabled: opts.ttlSeconds > 0
  }
}
