import { HG_ERR_CLIENT_GONE } from '../errors.js'
import { isGone, type Requester } from './bcrypt-pool.js'

/**
 * One verification in progress, shared by every request presenting the same
 * credential meanwhile. It is the requester the bcrypt pool sees for that work:
 * gone only once every request waiting for it has gone (the first one leaving
 * must not drop the compare the others wait for), and background work only
 * while no request waits for it.
 */
class Flight<T> implements Requester {
  background: boolean
  promise: Promise<T> | null = null
  private readonly members: Requester[] = []
  /** Waiting parties with no connection to watch: a refresh, a caller without a requester. */
  private unwatched = 0

  constructor (background: boolean) {
    this.background = background
    if (background) this.unwatched++
  }

  join (requester: Requester | undefined): void {
    if (requester === undefined) this.unwatched++
    else this.members.push(requester)
  }

  get destroyed (): boolean {
    if (this.unwatched > 0) return false
    for (const m of this.members) if (!m.destroyed) return false
    return true
  }
}

export interface SingleFlightOptions {
  /** A request now waits for work started in the background: move its queued compare up (BcryptPool.promote). */
  promote: (work: Requester) => void
  /** A request joined work another one had started. */
  onShared?: () => void
}

export interface SingleFlight<T> {
  /**
   * The result of the verification running under `key` (the memo key: never
   * the secret), joined; or of `verify`, started now. `verify` gets the
   * requester to hand to the bcrypt pool on behalf of everyone waiting.
   */
  run(key: string, requester: Requester | undefined, verify: (as: Requester) => Promise<T>): Promise<T>
  /** Starts `verify` as background work, unless a verification already runs under `key` (then null). */
  background(key: string, verify: (as: Requester) => Promise<T>): Promise<T> | null
  has(key: string): boolean
  readonly size: number
}

function clientGone (err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === HG_ERR_CLIENT_GONE.code
}

export function createSingleFlight<T> (opts: SingleFlightOptions): SingleFlight<T> {
  const flights = new Map<string, Flight<T>>()
  const onShared = opts.onShared ?? (() => {})

  function start (key: string, flight: Flight<T>, verify: (as: Requester) => Promise<T>): Promise<T> {
    flights.set(key, flight)
    const promise = (async () => {
      try {
        return await verify(flight)
      } finally {
        if (flights.get(key) === flight) flights.delete(key)
      }
    })()
    flight.promise = promise
    return promise
  }

  function join (key: string, requester: Requester | undefined, verify: (as: Requester) => Promise<T>): Promise<T> {
    const running = flights.get(key)
    if (running === undefined || running.promise === null) {
      const flight = new Flight<T>(false)
      flight.join(requester)
      return start(key, flight, verify)
    }
    running.join(requester)
    if (running.background) {
      running.background = false
      opts.promote(running)
    }
    onShared()
    return running.promise
  }

  return {
    async run (key, requester, verify) {
      try {
        return await join(key, requester, verify)
      } catch (err) {
        // The work was dropped because everyone waiting for it had left, in the
        // same turn as this request joined: its own compare is still wanted.
        if (!clientGone(err) || isGone(requester)) throw err
        return await join(key, requester, verify)
      }
    },
    background (key, verify) {
      if (flights.has(key)) return null
      return start(key, new Flight<T>(true), verify)
    },
    has: key => flights.has(key),
    get size () { return flights.size }
  }
}
