import bcrypt from 'bcrypt'
import threadpool from '../threadpool.cjs'
import { hgError, HG_ERR_AUTH_BUSY, HG_ERR_CLIENT_GONE } from '../errors.js'

export interface BcryptPoolOptions {
  /** Compares running at once; 0 = one per CPU the process may use (threadpool.cts). */
  concurrency: number
  /** Compares allowed to wait; beyond that compare() rejects with HG_ERR_AUTH_BUSY at once. */
  queueSize: number
}

/** The connection a compare is for (a socket): a compare for a closed one is not run. */
export interface Requester {
  readonly destroyed: boolean
}

export interface BcryptPool {
  /**
   * Rejects with HG_ERR_AUTH_BUSY when the queue is full, and with
   * HG_ERR_CLIENT_GONE instead of running when `requester` has closed by the
   * time the compare would start: the answer would reach no one.
   */
  compare(secret: string, hash: string, requester?: Requester): Promise<boolean>
  readonly active: number
  readonly queued: number
  readonly concurrency: number
  /** Compares started since the pool was made (tests observe it, metrics export it). */
  readonly compares: number
  readonly rejections: number
  /** Compares dropped because their requester had gone. */
  readonly abandoned: number
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
}

export function createBcryptPool (opts: BcryptPoolOptions): BcryptPool {
  const concurrency = opts.concurrency > 0 ? opts.concurrency : threadpool.availableCpus()
  const waiting: Waiter[] = []
  const observers: Array<(seconds: number) => void> = []
  const rejectObservers: Array<() => void> = []
  let active = 0
  let compares = 0
  let rejections = 0
  let abandoned = 0

  async function run (secret: string, hash: string): Promise<boolean> {
    compares++
    const start = performance.now()
    try {
      return await bcrypt.compare(secret, hash)
    } finally {
      const seconds = (performance.now() - start) / 1000
      for (const o of observers) o(seconds)
    }
  }

  /** A finished compare hands its slot to the first waiter still connected. */
  function release (): void {
    for (let next = waiting.shift(); next !== undefined; next = waiting.shift()) {
      if (!isGone(next.requester)) {
        next.wake(true)
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

  return {
    async compare (secret, hash, requester) {
      if (isGone(requester)) throw clientGone()
      if (active >= concurrency) {
        if (waiting.length >= opts.queueSize) sweep()
        if (waiting.length >= opts.queueSize) {
          rejections++
          for (const o of rejectObservers) o()
          throw hgError(HG_ERR_AUTH_BUSY)
        }
        // Under a cold flood, clients that gave up while queued would otherwise keep
        // every core busy for them long after they left. When granted, the slot is
        // handed over by release(): active stays counted.
        const granted = await new Promise<boolean>(resolve => waiting.push({ wake: resolve, requester }))
        if (!granted) throw clientGone()
      } else {
        active++
      }
      try {
        return await run(secret, hash)
      } finally {
        release()
      }
    },
    get active () { return active },
    get queued () { return waiting.length },
    get concurrency () { return concurrency },
    get compares () { return compares },
    get rejections () { return rejections },
    get abandoned () { return abandoned },
    onCompare (observer) { observers.push(observer) },
    onReject (observer) { rejectObservers.push(observer) }
  }
}
