import type { FastifyInstance } from 'fastify'
import type { Config } from '../config/schema.js'
import type { Health } from './health.js'

interface Closable {
  close(): Promise<void>
}

export interface LifecycleParts {
  health: Health
  proxy: FastifyInstance
  ops: FastifyInstance
  admin: FastifyInstance
  /** Flushed after the listeners have drained (last_used_at, audit events). */
  flush: Closable[]
  /** Closed last: the pools. */
  store: Closable
}

export interface Lifecycle {
  /** Starts the listeners; resolves with the ports actually bound (0 in config = any free port). */
  listen(): Promise<{ port: number, opsPort: number, adminPort: number }>
  /** Marks not ready, drains in-flight requests, flushes, closes the pools. Idempotent. */
  close(): Promise<void>
}

/** docs/DESIGN.md §7: the ops port first and last, so probes see the whole life of the process. */
export function createLifecycle (server: Config['server'], parts: LifecycleParts): Lifecycle {
  const { health, proxy, ops, admin } = parts
  let closing: Promise<void> | null = null
  return {
    async listen () {
      await ops.listen({ host: server.host, port: server.opsPort })
      await admin.listen({ host: server.adminHost, port: server.adminPort })
      await proxy.listen({ host: server.host, port: server.port })
      const port = (app: FastifyInstance): number => (app.server.address() as { port: number }).port
      return { port: port(proxy), opsPort: port(ops), adminPort: port(admin) }
    },
    close () {
      closing ??= (async () => {
        // Readiness answers 503 from here on; in-flight requests finish, new ones are refused.
        health.shuttingDown = true
        await Promise.allSettled([proxy.close(), admin.close()])
        await Promise.allSettled(parts.flush.map(async f => await f.close()))
        await ops.close()
        await parts.store.close()
      })()
      return closing
    }
  }
}
