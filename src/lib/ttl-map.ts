/**
 * The one bounded map with per-entry expiry (docs/DESIGN.md §12): the memo, the
 * in-process prefix cache and the failure limiter use it. Map order is use
 * order: when full, the least recently used entry goes (a hit moves its entry to
 * the young end at most once per `touchMs`, so a hot key costs no Map delete +
 * set per hit). An entry keeps the expiry it got when it was set. A leaf: no
 * project imports.
 */
export interface TtlMapOptions {
  maxEntries: number
  /** Clock in ms (tests inject one). */
  now?: () => number
  /** Recency granularity of hits, ms (default 1000; 0 = every hit moves the entry). */
  touchMs?: number
}

interface Slot<V> { value: V, expires: number, used: number }

export class TtlMap<K, V> {
  private readonly map = new Map<K, Slot<V>>()
  private readonly max: number
  private readonly touchMs: number
  readonly now: () => number

  constructor (opts: TtlMapOptions) {
    if (!(opts.maxEntries >= 1)) throw new Error('TtlMap: maxEntries must be at least 1')
    this.max = opts.maxEntries
    this.now = opts.now ?? Date.now
    this.touchMs = opts.touchMs ?? 1000
  }

  /** The live value, or undefined (an expired entry is dropped on the way). */
  get (k: K, now = this.now()): V | undefined {
    const e = this.map.get(k)
    if (e === undefined) return undefined
    if (e.expires <= now) {
      this.map.delete(k)
      return undefined
    }
    if (now - e.used >= this.touchMs) {
      e.used = now
      this.map.delete(k)
      this.map.set(k, e)
    }
    return e.value
  }

  /** The expiry (ms, this map's clock) of a live entry, or undefined. */
  expiresAt (k: K, now = this.now()): number | undefined {
    const e = this.map.get(k)
    return e === undefined || e.expires <= now ? undefined : e.expires
  }

  /** Stores for ttlMs (nothing when ttlMs <= 0), evicting the least recently used entries when full. */
  set (k: K, value: V, ttlMs: number, now = this.now()): void {
    if (!(ttlMs > 0)) return
    this.map.delete(k)
    while (this.map.size >= this.max) {
      const oldest = this.map.keys().next()
      if (oldest.done === true) break
      this.map.delete(oldest.value)
    }
    this.map.set(k, { value, expires: now + ttlMs, used: now })
  }

  delete (k: K): boolean {
    return this.map.delete(k)
  }

  clear (): void {
    this.map.clear()
  }

  get size (): number {
    return this.map.size
  }
}
