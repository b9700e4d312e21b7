import bcrypt from 'bcrypt'
import { availableParallelism } from 'node:os'
import { hgError, HG_ERR_AUTH_BUSY } from '../errors.js'

export interface BcryptPoolOptions {
  /** Compares running at once; 0 = one per core. */
  concurrency: number
  /** Compares allowed to wait; beyond that compare() rejects with HG_ERR_AUTH_BUSY at once. */
  queueSize: number
}

export interface BcryptPool {
  compare(secret: string, hash: string): Promise<boolean>
  readonly active: number
  readonly queued: number
  readonly concurrency: number
  /** Compares started since the pool was made (tests observe it, metrics export it). */
  readonly compares: number
  readonly rejections: number
  onCompare(observer: (seconds: number) => void): void
  onReject(observer: () => void): void
}

export function createBcryptPool (opts: BcryptPoolOptions): BcryptPool {
  const concurrency = opts.concurrency > 0 ? opts.concurrency : availableParallelism()
  const waiting: Array<() => void> = []
  const observers: Array<(seconds: number) => void> = []
  const rejectObservers: Array<() => void> = []
  let active = 0
  let compares = 0
  let rejections = 0

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

  function release (): void {
    const next = waiting.shift()
    if (next !== undefined) next()
    else active--
  }

  return {
    async compare (secret, hash) {
      if (active >= concurrency) {
        if (waiting.length >= opts.queueSize) {
          rejections++
          for (const o of rejectObservers) o()
          throw hgError(HG_ERR_AUTH_BUSY)
        }
        // The slot is handed over by release(): active stays counted.
        await new Promise<void>(resolve => waiting.push(resolve))
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
    onCompare (observer) { observers.push(observer) },
    onReject (observer) { rejectObservers.push(observer) }
  }
}
