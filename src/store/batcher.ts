/**
 * Coalesces lookups that arrive within one event-loop turn into one query,
 * sent on setImmediate, i.e. after every caller of this turn has joined. A
 * caller never joins a query already sent, so every answer was read after
 * the request asked for it (DESIGN.md 2.5).
 */
export interface Batcher<K, V> {
  load(key: K): Promise<V | undefined>
  readonly batches: number
}

interface Waiter<V> {
  resolve: (v: V | undefined) => void
  reject: (err: unknown) => void
}

export function createBatcher<K, V> (
  fetch: (keys: K[]) => Promise<Map<K, V>>,
  maxBatch = 256
): Batcher<K, V> {
  let pending = new Map<K, Array<Waiter<V>>>()
  let scheduled = false
  let batches = 0

  function flush (): void {
    scheduled = false
    const current = pending
    pending = new Map()
    const keys = [...current.keys()]
    for (let i = 0; i < keys.length; i += maxBatch) {
      const slice = keys.slice(i, i + maxBatch)
      batches++
      fetch(slice).then(found => {
        for (const k of slice) {
          const v = found.get(k)
          for (const w of current.get(k) ?? []) w.resolve(v)
        }
      }, (err: unknown) => {
        for (const k of slice) for (const w of current.get(k) ?? []) w.reject(err)
      })
    }
  }

  return {
    load (key) {
      return new Promise<V | undefined>((resolve, reject) => {
        const list = pending.get(key)
        if (list === undefined) pending.set(key, [{ resolve, reject }])
        else list.push({ resolve, reject })
        if (!scheduled) {
          scheduled = true
          setImmediate(flush)
        }
      })
    },
    get batches () { return batches }
  }
}
