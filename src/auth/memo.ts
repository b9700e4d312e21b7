import { createHmac, randomBytes } from 'node:crypto'

export interface MemoEntry {
  id: string
  hash: string
}

export interface Memo {
  /** HMAC-SHA256 of the credential under this process's random key; meaningless outside the process. */
  key(credential: string): string
  get(key: string): MemoEntry | undefined
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
}

interface Timed<T> { value: T, expires: number, used: number }

/** Recency granularity: a hit moves its entry at most once per this many ms (a Map delete + set saved per hot hit). */
const TOUCH_MS = 1000

class TtlMap<T> {
  private readonly map = new Map<string, Timed<T>>()
  constructor (private readonly ttlMs: number, private readonly max: number, private readonly now: () => number) {}

  get (k: string): T | undefined {
    const e = this.map.get(k)
    if (e === undefined) return undefined
    const now = this.now()
    if (e.expires <= now) {
      this.map.delete(k)
      return undefined
    }
    // A hit moves the entry to the young end (keeping its expiry): eviction is least
    // recently used, to within TOUCH_MS.
    if (now - e.used >= TOUCH_MS) {
      e.used = now
      this.map.delete(k)
      this.map.set(k, e)
    }
    return e.value
  }

  set (k: string, value: T): void {
    if (this.ttlMs <= 0) return
    this.map.delete(k)
    // Map order is use order: evict the least recently used when full.
    while (this.map.size >= this.max) {
      const oldest = this.map.keys().next()
      if (oldest.done === true) break
      this.map.delete(oldest.value)
    }
    const now = this.now()
    this.map.set(k, { value, expires: now + this.ttlMs, used: now })
  }

  delete (k: string): void {
    this.map.delete(k)
  }

  get size (): number {
    return this.map.size
  }
}

/**
 * The in-process verification memo (DESIGN.md 2.4): HMAC(credential) -> {id, hash}
 * of a past bcrypt match, valid only while the stored hash is unchanged (the caller
 * checks it against the fresh-state row). Failed secrets get a short negative entry.
 */
export function createMemo (opts: MemoOptions): Memo {
  const now = opts.now ?? Date.now
  const hmacKey = randomBytes(32)
  const positive = new TtlMap<MemoEntry>(opts.ttlSeconds * 1000, opts.maxEntries, now)
  const negative = new TtlMap<true>(opts.negativeTtlSeconds * 1000, opts.negativeMaxEntries, now)
  return {
    key: credential => createHmac('sha256', hmacKey).update(credential).digest('base64'),
    get: k => positive.get(k),
    set: (k, entry) => positive.set(k, entry),
    delete: k => positive.delete(k),
    isNegative: k => negative.get(k) === true,
    setNegative: k => negative.set(k, true),
    get size () { return positive.size },
    enabled: opts.ttlSeconds > 0
  }
}
