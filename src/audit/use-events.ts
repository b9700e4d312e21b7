import { EventKind, type CredentialRef, type NewEvent } from './events.js'

/** The refusals that name a credential whose secret was verified, and the event each becomes. */
export const USE_EVENT_KIND: Readonly<Record<string, EventKind>> = {
  revoked: EventKind.usedAfterRevoke,
  expired: EventKind.usedAfterExpiry,
  suspended: EventKind.usedWhileSuspended,
  not_member: EventKind.usedAfterRemoval
}

export interface UseEventOptions {
  /** How often pending events are written. */
  flushIntervalMs: number
  /** At most one event per credential and kind per this many ms (docs/DESIGN.md §10: a minute). */
  minIntervalMs: number
  /** Events waiting to be written at most; beyond it new ones are dropped (and counted). */
  maxPending: number
  write: (events: NewEvent[]) => Promise<void>
  onWritten?: (events: readonly NewEvent[]) => void
  onDropped?: (count: number) => void
  onError?: (err: unknown) => void
  now?: () => number
}

export interface UseEventRecorder {
  /**
   * Notes a refused use of a known credential (the request's reason decides the
   * kind; other reasons are ignored). Never waits, never throws.
   */
  record(reason: string, credential: CredentialRef, clientIp: string | null, requestId: string | null): void
  /** Writes what is pending now (also on shutdown). */
  flush(): Promise<void>
  readonly pending: number
  close(): Promise<void>
}

const BATCH = 500
/** A batch that failed is retried on the next flushes, this many times in all. */
const ATTEMPTS = 3

interface Pending {
  event: NewEvent
  attempts: number
}

/**
 * Use-events off the request path, like last_used_at (auth/last-used.ts):
 * coalesced in memory to one per credential and kind per interval, written in
 * batches on a timer. A burst of requests with one revoked token costs one Map
 * lookup each and writes one row per interval.
 */
export function createUseEventRecorder (opts: UseEventOptions): UseEventRecorder {
  const now = opts.now ?? Date.now
  let pending: Pending[] = []
  /** credential id + kind -> when its last event was taken. Pruned on every flush. */
  const taken = new Map<string, number>()
  // Bounded like the queue: entries live one interval, and only accepted events make one.
  const maxTracked = opts.maxPending * 4
  let flushing: Promise<void> | null = null
  let closed = false
  const timer = setInterval(() => { void recorder.flush() }, opts.flushIntervalMs)
  timer.unref()

  function drop (count: number): void {
    if (count > 0) opts.onDropped?.(count)
  }

  async function writeOut (): Promise<void> {
    const batch = pending
    pending = []
    for (let i = 0; i < batch.length; i += BATCH) {
      const slice = batch.slice(i, i + BATCH)
      const events = slice.map(p => p.event)
      try {
        await opts.write(events)
        opts.onWritten?.(events)
      } catch (err) {
        opts.onError?.(err)
        // A sick database: keep them for the next flushes, within the bound.
        const retry = slice.filter(p => ++p.attempts < ATTEMPTS)
        drop(slice.length - retry.length)
        const room = Math.max(0, opts.maxPending - pending.length)
        drop(Math.max(0, retry.length - room))
        pending.push(...retry.slice(0, room))
      }
    }
    const horizon = now() - opts.minIntervalMs
    for (const [key, t] of taken) if (t <= horizon) taken.delete(key)
  }

  const recorder: UseEventRecorder = {
    record (reason, credential, clientIp, requestId) {
      const kind = USE_EVENT_KIND[reason]
      if (kind === undefined || closed) return
      const t = now()
      const key = credential.id + kind
      const last = taken.get(key)
      if (last !== undefined && t - last < opts.minIntervalMs) return
      if (pending.length >= opts.maxPending || (last === undefined && taken.size >= maxTracked)) {
        drop(1)
        return
      }
      taken.set(key, t)
      pending.push({ event: { at: new Date(t), kind, credential, actor: null, clientIp, requestId, detail: null }, attempts: 0 })
    },
    async flush () {
      // eslint-disable-next-line no-unmodified-loop-condition -- cleared by the running flush's finally
      while (flushing !== null) await flushing
      if (pending.length === 0 && taken.size === 0) return
      flushing = writeOut().finally(() => { flushing = null })
      await flushing
    },
    get pending () { return pending.length },
    async close () {
      closed = true
      clearInterval(timer)
      await recorder.flush()
    }
  }
  return recorder
}
