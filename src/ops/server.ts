import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import type { Logger } from '../logger.js'

export interface HealthReport {
  postgres: 'ok' | 'down'
  migrated: boolean
  redis: 'ok' | 'degraded' | 'disabled'
}

export interface Health {
  /** Set on SIGTERM: readiness answers 503 from then on. */
  shuttingDown: boolean
  check(): Promise<HealthReport>
}

export interface OpsOptions {
  log: Logger
  health: Health
  /** Renders /metrics; absent = 404. */
  metrics?: () => Promise<{ contentType: string, body: string }>
  /** The assertion keys' JWKS (DESIGN.md 9); absent = 404. */
  jwks?: { keys: readonly object[] }
}

/** The ops listener (DESIGN.md 5, 9): liveness, readiness, metrics, the assertion JWKS. No auth hook lives here. */
export function buildOpsApp (opts: OpsOptions): FastifyInstance {
  const app: FastifyInstance = Fastify({ loggerInstance: opts.log as FastifyBaseLogger, logController: new LogController({ disableRequestLogging: true }) })

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
  if (opts.jwks !== undefined) {
    const body = JSON.stringify(opts.jwks)
    app.get('/.well-known/jwks.json', async (_req, reply) => {
      // Keys change only with a restart; verifiers re-fetch on an unknown kid anyway.
      return reply.header('content-type', 'application/jwk-set+json').header('cache-control', 'public, max-age=300').send(body)
    })
  }
  return app
}
