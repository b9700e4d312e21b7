export interface FailureLimiter {
  blocked(client: string): number
  fail(client: string): void
  readonly enabled: boolean
}

/**
 * Failed authentications per client address in fixed windows (docs/DESIGN.md §2.2 and §2 Errors: 429
 * rate_limited). In-process: each replica counts its own; bounded memory.
 * blocked() returns the seconds until the window ends, 0 when not blocked.
 */
export function createFailureLimiter (opts: { maxFailures: number, windowSeconds: number, maxClients?: number, now?: () => number }): FailureLimiter {
  const now = opts.now ?? Date.now
  const max = opts.maxClients ?? 100_000
  const windows = new Map<string, { count: number, resetAt: number }>()
  const enabled = opts.maxFailures > 0
  return {
    enabled,
    blocked (client) {
      if (!enabled) return 0
      const w = windows.get(client)
      if (w === undefined) return 0
      const t = now()
      if (w.resetAt <= t) {
        windows.delete(client)
        return 0
      }
      return w.count >= opts.maxFailures ? Math.ceil((w.resetAt - t) / 1000) : 0
    },
    fail (client) {
      if (!enabled) return
      const t = now()
      const w = windows.get(client)
      if (w === undefined || w.resetAt <= t) {
        if (w !== undefined) windows.delete(client)
        while (windows.size >= max) {
          const oldest = windows.keys().next()
          if (oldest.done === true) break
          windows.delete(oldest.value)
        }
        windows.set(client, { count: 1, resetAt: t + opts.windowSeconds * 1000 })
      } else {
        w.count++
      }
    }
  }
}
