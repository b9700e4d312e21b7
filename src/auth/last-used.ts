export interface LastUsedOptions {
  /** How often pending marks are written. */
  flushIntervalMs: number
  /** At most one write per credential per this many ms (docs/DESIGN.md §2 step 9: a minute). */
  minIntervalMs: number
  write: (kind: 'pat' | 'api_key', ids: string[], at: Date) => Promise<void>
  onError?: (err: unknown) => void
  now?: () => number
}

export interface LastUsedRecorder {
  /** Notes a use; never waits, never throws. */
  record(kind: 'pat' | 'api_key', id: string): void
  /** Writes what is pending now (also on shutdown). */
  flush(): Promise<void>
  readonly pending: number
  close(): Promise<void>
}

/**
 * last_used_at off the request path (docs/DESIGN.md §2 step 9): uses are noted in memory,
 * coalesced to one write per credential per interval and written in batches.
 */
export function createLastUsedRecorder (opts: LastUsedOptions): LastUsedRecorder {
  const now = opts.now ?? Date.now
  const pending = { pat: new Set<string>(), api_key: new Set<string>() }
  const written = new Map<string, number>()
  let flushing: Promise<void> | null = null
  let closed = false
  const timer = setInterval(() => { void recorder.flush() }, opts.flushIntervalMs)
  timer.unref()

  async function writeOut (): Promise<void> {
    const at = new Date(now())
    for (const kind of ['pat', 'api_key'] as const) {
      const ids = [...pending[kind]]
      if (ids.length === 0) continue
      pending[kind].clear()
      try {
        for (let i = 0; i < ids.length; i += 1000) await opts.write(kind, ids.slice(i, i + 1000), at)
      } catch (err) {
        // Lost marks are only a slightly older last_used_at; retrying could pile up on a sick database.
        opts.onError?.(err)
      }
    }
    const horizon = now() - opts.minIntervalMs
    for (const [id, t] of written) if (t <= horizon) written.delete(id)
  }

  const recorder: LastUsedRecorder = {
    record (kind, id) {
      if (closed) return
      const t = now()
      const last = written.get(id)
      if (last !== undefined && t - last < opts.minIntervalMs) return
      written.set(id, t)
      pending[kind].add(id)
    },
    async flush () {
      // eslint-disable-next-line no-unmodified-loop-condition -- cleared by the running flush's finally
      while (flushing !== null) await flushing
      flushing = writeOut().finally(() => { flushing = null })
      await flushing
    },
    get pending () { return pending.pat.size + pending.api_key.size },
    async close () {
      closed = true
      clearInterval(timer)
      await recorder.flush()
    }
  }
  return recorder
}
