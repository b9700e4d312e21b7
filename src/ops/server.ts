import Fastify, { type FastifyInstance } from 'fastify'
import { internalFastifyOptions } from '../http/options.js'
import { errorHandler, sendError } from '../http/reply.js'
import { HG_ERR_NOT_FOUND } from '../errors.js'
import type { Logger } from '../logger.js'
import type { Health } from './health.js'

export interface OpsOptions {
  log: Logger
  health: Health
  /** Renders /metrics; absent = 404. */
  metrics?: () => Promise<{ contentType: string, body: string }>
}

/** The ops listener (docs/DESIGN.md §5): liveness, readiness, metrics. No auth hook lives here. */
export function buildOpsApp (opts: OpsOptions): FastifyInstance {
  const app: FastifyInstance = Fastify(internalFastifyOptions(opts.log))
  app.setErrorHandler(errorHandler)
  app.setNotFoundHandler((_req, reply) => sendError(reply, HG_ERR_NOT_FOUND))

  app.get('/healthz', async () => ({ status: 'ok' }))

  app.get('/readyz', async (_req, reply) => {
    if (opts.health.shuttingDown) {
      return reply.code(503).send({ status: 'unavailable', postgres: 'ok', redis: 'ok', reason: 'shutting down' })
    }
    const h = await opts.health.check()
    const pgReady = h.postgres === 'ok' && h.migrated
    const status = !pgReady ? 'unavailable' : h.redis === 'degraded' ? 'degraded' : 'ok'
    const body: Record<string, string> = { status, postgres: h.postgres, redis: h.redis }
    if (h.postgres === 'ok' && !h.migrated) body.reason = 'migrations not applied'
    return reply.code(pgReady ? 200 : 503).send(body)
  })

  if (opts.metrics !== undefined) {
    const render = opts.metrics
    app.get('/metrics', async (_req, reply) => {
      const { contentType, body } = await render()
      return reply.header('content-type', contentType).send(body)
    })
  }
  return app
}
