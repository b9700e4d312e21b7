/**
 * Coalesces lookups into batched queries. A batch is sent on setImmediate, i.e.
 * after every caller of the current event-loop turn has joined; while
 * `maxInFlight` batches are already out, new callers keep joining the next one,
 * which is sent as soon as one of them returns. A caller never joins a query
 * already sent, so every answer was read after the request asked for it
 * (docs/DESIGN.md §2 step 5); under load, batches grow instead of round trips multiplying.
 */
export interface Batcher<K, V> {
  load(key: K): Promise<V | undefined>
  /** Queries sent so far. */
  readonly batches: number
  /** Keys asked for so far (batches / keys = how well they coalesce). */
  readonly keys: number
  readonly inFlight: number
}

export interface BatcherOptions {
  /** Keys per query at most; more keys are split over several queries. */
  maxBatch?: number
  /** Queries out at once at most (0 = no limit). */
  maxInFlight?: number
}

interface Waiter<V> {
  resolve: (v: V | undefined) => void
  reject: (err: unknown) => void
}

export function createBatcher<K, V> (
  fetch: (keys: K[]) => Promise<Map<K, V>>,
  opts: BatcherOptions = {}
): Batcher<K, V> {
  const maxBatch = opts.maxBatch ?? 256
  const maxInFlight = opts.maxInFlight ?? 0
  let pending = new Map<K, Array<Waiter<V>>>()
  let scheduled = false
  let inFlight = 0
  let batches = 0
  let keyCount = 0

  function schedule (): void {
    if (scheduled || pending.size === 0) return
    if (maxInFlight > 0 && inFlight >= maxInFlight) return // settle() schedules it
    scheduled = true
    setImmediate(flush)
  }

  function settle (): void {
    inFlight--
    schedule()
  }

  function send (slice: K[], waiters: Map<K, Array<Waiter<V>>>): void {
    batches++
    inFlight++
    // A fetch that throws instead of rejecting must not keep its slot or strand its callers.
    let sent: Promise<Map<K, V>>
    try {
      sent = fetch(slice)
    } catch (err) {
      sent = Promise.reject(err)
    }
    sent.then(found => {
      settle()
      for (const k of slice) {
        const v = found.get(k)
        for (const w of waiters.get(k) ?? []) w.resolve(v)
      }
    }, (err: unknown) => {
      settle()
      for (const k of slice) for (const w of waiters.get(k) ?? []) w.reject(err)
    })
  }

  function flush (): void {
    scheduled = false
    const current = pending
    pending = new Map()
    const keys = [...current.keys()]
    const slots = maxInFlight > 0 ? Math.max(1, maxInFlight - inFlight) : Infinity
    let i = 0
    for (let n = 0; i < keys.length && n < slots; i += maxBatch, n++) send(keys.slice(i, i + maxBatch), current)
    // Beyond the free slots, callers go back to wait for the next batch (they still
    // joined no query sent before they asked).
    for (; i < keys.length; i++) {
      const k = keys[i] as K
      pending.set(k, current.get(k) ?? [])
    }
  }

  return {
    load (key) {
      keyCount++
      return new Promise<V | undefined>((resolve, reject) => {
        const list = pending.get(key)
        if (list === undefined) pending.set(key, [{ resolve, reject }])
        else list.push({ resolve, reject })
        schedule()
      })
    },
    get batches () { return batches },
    get keys () { return keyCount },
    get inFlight () { return inFlight }
  }
}
