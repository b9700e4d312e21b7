import { connect } from 'node:net'

export interface UpstreamCheckOptions {
  /** The upstream's origin (UPSTREAM_URL). */
  url: string
  /** A connection not made within this is 'down'. */
  timeoutMs?: number
  /** A result is reused this long, so that probes and scrapes together cost one connection a second at most. */
  cacheMs?: number
  now?: () => number
}

export interface UpstreamCheck {
  /** Whether a TCP connection to the upstream opens; concurrent callers share one attempt. */
  status(): Promise<'ok' | 'down'>
}

export const UPSTREAM_CHECK_TIMEOUT_MS = 1000
export const UPSTREAM_CHECK_CACHE_MS = 1000

function endpoint (url: string): { host: string, port: number } {
  const u = new URL(url)
  const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname
  const port = u.port !== '' ? Number(u.port) : u.protocol === 'https:' ? 443 : 80
  return { host, port }
}

/**
 * The readiness check of the upstream (docs/DESIGN.md §5 /readyz, issue 20): a TCP
 * connect, not an HTTP request, because the sidecar knows no health path of the
 * app and a listening socket is what a rollout waits for (an app that has not
 * bound its port yet would get 502s). The connection is closed as soon as it opens.
 */
export function createUpstreamCheck (opts: UpstreamCheckOptions): UpstreamCheck {
  const { host, port } = endpoint(opts.url)
  const timeoutMs = opts.timeoutMs ?? UPSTREAM_CHECK_TIMEOUT_MS
  const cacheMs = opts.cacheMs ?? UPSTREAM_CHECK_CACHE_MS
  const now = opts.now ?? Date.now
  let last: { at: number, status: 'ok' | 'down' } | null = null
  let inFlight: Promise<'ok' | 'down'> | null = null

  function probe (): Promise<'ok' | 'down'> {
    return new Promise(resolve => {
      const socket = connect({ host, port })
      const done = (status: 'ok' | 'down'): void => {
        clearTimeout(timer)
        socket.destroy()
        resolve(status)
      }
      const timer = setTimeout(() => done('down'), timeoutMs)
      socket.once('connect', () => done('ok'))
      socket.once('error', () => done('down'))
    })
  }

  return {
    status () {
      if (last !== null && now() - last.at < cacheMs) return Promise.resolve(last.status)
      inFlight ??= probe().then(status => {
        last = { at: now(), status }
        inFlight = null
        return status
      })
      return inFlight
    }
  }
}
