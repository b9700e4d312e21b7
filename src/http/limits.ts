import { readFileSync } from 'node:fs'
import type { Server } from 'node:http'
import type { Logger } from '../logger.js'

/**
 * The connection cap and header timeout of one listener (docs/DESIGN.md §2.1;
 * the proxy listener also checks the timeout every second, see http/options.ts,
 * the internal ones at Node's 30 s). Node closes every
 * connection accepted beyond `max` at once, so a flood of idle connections
 * costs one descriptor each only up to the cap. An `error` on the listening
 * socket (accept failing with EMFILE/ENFILE when descriptors run out anyway)
 * is logged, at most once a second, instead of ending the process.
 */
export function limitConnections (server: Server, max: number, headersTimeoutMs: number, log: Logger, name: string): void {
  server.maxConnections = max
  server.headersTimeout = headersTimeoutMs
  let lastDropLog = 0
  let dropped = 0
  server.on('drop', () => {
    dropped++
    const now = Date.now()
    if (now - lastDropLog >= 1000) {
      log.warn({ listener: name, maxConnections: max, dropped }, 'connection cap reached: new connections closed')
      lastDropLog = now
      dropped = 0
    }
  })
  let lastErrorLog = 0
  server.on('error', (err: NodeJS.ErrnoException) => {
    const now = Date.now()
    if (now - lastErrorLog >= 1000) {
      log.error({ listener: name, err }, 'listener error (accept failed); still serving')
      lastErrorLog = now
    }
  })
}

/** The soft RLIMIT_NOFILE from /proc (Linux); null where it cannot be read. */
export function openFilesLimit (read: (path: string) => string = p => readFileSync(p, 'utf8')): number | null {
  try {
    const m = /^Max open files\s+(\d+|unlimited)\s/m.exec(read('/proc/self/limits'))
    if (m === null) return null
    return m[1] === 'unlimited' ? Number.POSITIVE_INFINITY : Number(m[1])
  } catch {
    return null
  }
}
