import bcrypt from 'bcrypt'
import threadpool from '../threadpool.cjs'
import { hgError, HG_ERR_AUTH_BUSY, HG_ERR_CLIENT_GONE } from '../errors.js'

export interface BcryptPoolOptions {
  /** Compares running at once; 0 = one per CPU the process may use (threadpool.cts). */
  concurrency: number
  /** Compares allowed to wait; beyond that compare() rejects with HG_ERR_AUTH_BUSY at once. */
  queueSize: number
  /** Background compares allowed to wait (default 1024); beyond that they are dropped. */
  backgroundQueueSize?: number
  /**
   * Background compares running at once (default: half the concurrency, at
   * least 1): a burst of refreshes leaves cores to the event loop and to the
   * compares requests wait for.
   */
  backgroundConcurrency?: number
  /** The compare itself (default bcrypt.compare): tests wrap it to hold one in flight. */
  compare?: (secret: string, hash: string) => Promise<boolean>
}

/** The connection a compare is for (a socket): a compare for a closed one is not run. */
export interface Requester {
  readonly destroyed: boolean
  /**
   * Work nobody waits for (a memo refresh): it runs only in a slot no waiting
   * request wants, never counts against the queue, and is dropped when its
   * own lane is full.
   */
  readonly background?: boolean
}

export interface BcryptPool {
  /**
   * Rejects with HG_ERR_AUTH_BUSY when the queue is full, and with
   * HG_ERR_CLIENT_GONE instead of running when `requester` has closed by the
   * time the compare would start: the answer would reach no one. A
   * `requester.background` compare rejects with HG_ERR_AUTH_BUSY when its own
   * lane is full, and never makes a request's compare reject.
   */
  compare(secret: string, hash: string, requester?: Requester): Promise<boolean>
  /** A request now waits for this background work: its queued compare moves to the end of the request queue. */
  promote(requester: Requester): void
  readonly active: number
  readonly queued: number
  /** Background compares waiting for an idle slot. */
  readonly backgroundQueued: number
  /** Whether a background compare submitted now would be queued rather than dropped. */
  readonly backgroundAvailable: boolean
  readonly concurrency: number
  readonly backgroundConcurrency: number
  /** Compares started since the pool was made (tests observe it, metrics export it). */
  readonly compares: number
  readonly rejections: number
  /** Compares dropped because their requester had gone. */
  readonly abandoned: number
  /** Background compares dropped because their lane was full. */
  readonly backgroundDropped: number
  onCompare(observer: (seconds: number) => void): void
  onReject(observer: () => void): void
}

/** Whether the client a piece of work is for has closed its connection. */
export function isGone (requester: Requester | undefined): boolean {
  return requester !== undefined && requester.destroyed
}

interface Waiter {
  /** true: the slot is handed over; false: dropped, the requester has gone. */
  wake: (granted: boolean) => void
  requester: Requester | undefined
  /** The lane it waits in: true until a request needs its result (promote). */
  background: boolean
}

export function createBcryptPool (opts: BcryptPoolOptions): BcryptPool {
  const concurrency = opts.concurrency > 0 ? opts.concurrency : threadpool.availableCpus()
  const backgroundQueueSize = opts.backgroundQueueSize ?? 1024
  const backgroundConcurrency = Math.min(concurrency, opts.backgroundConcurrency ?? Math.max(1, Math.floor(concurrency / 2)))
  const waiting: Waiter[] = []
  const background: Waiter[] = []
  const observers: Array<(seconds: number) => void> = []
  const rejectObservers: Array<() => void> = []
  let active = 0
  /** Slots held by background compares: the request queue may grow by as many (see acquire). */
  let activeBackground = 0
  let compares = 0
  let rejections = 0
  let abandoned = 0
  let backgroundDropped = 0
  const compareFn = opts.compare ?? (async (secret: string, hash: string) => await bcrypt.compare(secret, hash))

  async function run (secret: string, hash: string): Promise<boolean> {
    compares++
    const start = performance.now()
    try {
      return await compareFn(secret, hash)
    } finally {
      const seconds = (performance.now() - start) / 1000
      for (const o of observers) o(seconds)
    }
  }

  function grant (w: Waiter): void {
    if (w.background) activeBackground++
    w.wake(true)
  }

  /**
   * A finished compare hands its slot to the first waiting request still
   * connected, and only when none waits to background work (within its own
   * concurrency).
   */
  function release (wasBackground: boolean): void {
    if (wasBackground) activeBackground--
    for (let next = waiting.shift(); next !== undefined; next = waiting.shift()) {
      if (!isGone(next.requester)) {
        grant(next)
        return
      }
      next.wake(false)
    }
    while (activeBackground < backgroundConcurrency) {
      const next = background.shift()
      if (next === undefined) break
      if (!isGone(next.requester)) {
        grant(next)
        return
      }
      next.wake(false)
    }
    active--
  }

  /** A full queue first lets go of waiters whose clients have left. */
  function sweep (): void {
    let kept = 0
    for (const w of waiting) {
      if (isGone(w.requester)) w.wake(false)
      else waiting[kept++] = w
    }
    waiting.length = kept
  }

  function clientGone (): Error {
    abandoned++
    return hgError(HG_ERR_CLIENT_GONE)
  }

  /**
   * True (or a promise of true) once a slot is this compare's; false when it
   * was dropped while waiting. `w.background` then tells what kind of slot it holds.
   */
  function acquire (w: Waiter): boolean | Promise<boolean> {
    if (w.background) {
      if (active < concurrency && waiting.length === 0 && activeBackground < backgroundConcurrency) {
        active++
        activeBackground++
        return true
      }
      if (background.length >= backgroundQueueSize) {
        backgroundDropped++
        throw hgError(HG_ERR_AUTH_BUSY)
      }
      return new Promise<boolean>(resolve => { w.wake = resolve; background.push(w) })
    }
    if (active < concurrency) {
      active++
      return true
    }
    // Slots held by background work are lent, not lost: the requests it delays may
    // wait in their place, so background work never turns a request into a 503.
    const limit = opts.queueSize + activeBackground
    if (waiting.length >= limit) sweep()
    if (waiting.length >= limit) {
      rejections++
      for (const o of rejectObservers) o()
      throw hgError(HG_ERR_AUTH_BUSY)
    }
    // Under a cold flood, clients that gave up while queued would otherwise keep
    // every core busy for them long after they left. When granted, the slot is
    // handed over by release(): active stays counted.
    return new Promise<boolean>(resolve => { w.wake = resolve; waiting.push(w) })
  }

  return {
    async compare (secret, hash, requester) {
      if (isGone(requester)) throw clientGone()
      const w: Waiter = { wake: () => {}, requester, background: requester?.background === true }
      const slot = acquire(w)
      if (slot !== true && !(await slot)) throw clientGone()
      try {
        return await run(secret, hash)
      } finally {
        release(w.background)
      }
    },
    promote (requester) {
      const i = background.findIndex(w => w.requester === requester)
      if (i === -1) return
      const [w] = background.splice(i, 1)
      if (w === undefined) return
      w.background = false
      waiting.push(w)
    },
    get active () { return active },
    get queued () { return waiting.length },
    get backgroundQueued () { return background.length },
    get backgroundAvailable () { return background.length < backgroundQueueSize },
    get concurrency () { return concurrency },
    get backgroundConcurrency () { return backgroundConcurrency },
    get compares () { return compares },
    get rejections () { return rejections },
    get abandoned () { return abandoned },
    get backgroundDropped () { return backgroundDropped },
    onCompare (observer) { observers.push(observer) },
    onReject (observer) { rejectObservers.push(observer) }
  }
}
