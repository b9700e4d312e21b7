import { setTimeout as sleep } from 'node:timers/promises'

export interface RetentionOptions {
  /** Events older than this many days are deleted; 0 keeps them forever (no timer at all). */
  days: number
  intervalMs: number
  /** Rows per DELETE: short statements that hold few locks and never one long transaction. */
  batchSize: number
  /** Deletes at most `batch` expired events, returns how many it deleted. */
  deleteBatch: (days: number, batch: number) => Promise<number>
  onDeleted?: (count: number) => void
  onError?: (err: unknown) => void
}

export interface Retention {
  /** One sweep: batches until none is full; resolves with the rows deleted. */
  sweep(): Promise<number>
  close(): Promise<void>
}

/** Pause between two batches of one sweep: the database serves requests meanwhile. */
const PAUSE_MS = 20

/**
 * The background delete of expired credential events. Every replica runs it;
 * the DELETE skips rows another replica holds. The first sweep comes within a
 * minute of start (jittered, so that replicas started together do not sweep
 * together), then one per interval. Timers are unref'd; close() stops between
 * batches and waits for the running one.
 */
export function createRetention (opts: RetentionOptions): Retention {
  let closed = false
  let running: Promise<number> | null = null
  let timer: NodeJS.Timeout | null = null

  async function run (): Promise<number> {
    let total = 0
    for (;;) {
      if (closed) break
      const n = await opts.deleteBatch(opts.days, opts.batchSize)
      total += n
      if (n > 0) opts.onDeleted?.(n)
      if (n < opts.batchSize) break
      await sleep(PAUSE_MS, undefined, { ref: false })
    }
    return total
  }

  const retention: Retention = {
    sweep () {
      if (opts.days === 0) return Promise.resolve(0)
      running ??= run().finally(() => { running = null })
      return running
    },
    async close () {
      closed = true
      if (timer !== null) clearTimeout(timer)
      await running?.catch(() => {})
    }
  }

  function schedule (ms: number): void {
    if (closed) return
    timer = setTimeout(() => {
      retention.sweep().catch(err => opts.onError?.(err)).finally(() => schedule(opts.intervalMs))
    }, ms)
    timer.unref()
  }

  if (opts.days > 0) schedule(Math.round(Math.min(opts.intervalMs, 60_000) * (0.5 + Math.random())))
  return retention
}
