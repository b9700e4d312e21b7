import Fastify, { type FastifyInstance } from 'fastify'
import { internalFastifyOptions } from '../http/options.js'
import { errorHandler, sendError } from '../http/reply.js'
import { HG_ERR_NOT_FOUND } from '../errors.js'
import type { Logger } from '../logger.js'
import type { Health, HealthReport } from './health.js'

export interface OpsOptions {
  log: Logger
  health: Health
  /** Renders /metrics; absent = 404. */
  metrics?: () => Promise<{ contentType: string, body: string }>
  /** The assertion keys' JWKS (docs/DESIGN.md §9); absent = 404. */
  jwks?: { keys: readonly object[] }
}

export interface ReadinessAnswer {
  ready: boolean
  body: Record<string, string>
  report: HealthReport | null
}

/** What /readyz answers: 503 while shutting down, without PostgreSQL, unmigrated, or with the checked upstream down. */
export async function readiness (health: Health): Promise<ReadinessAnswer> {
  if (health.shuttingDown) {
    return { ready: false, body: { status: 'unavailable', postgres: 'ok', redis: 'ok', reason: 'shutting down' }, report: null }
  }
  const h = await health.check()
  const pgReady = h.postgres === 'ok' && h.migrated
  const ready = pgReady && h.upstream !== 'down'
  const status = !ready ? 'unavailable' : h.redis === 'degraded' ? 'degraded' : 'ok'
  const body: Record<string, string> = { status, postgres: h.postgres, redis: h.redis }
  if (h.upstream !== undefined) body.upstream = h.upstream
  if (h.postgres === 'ok' && !h.migrated) body.reason = 'migrations not applied'
  else if (pgReady && h.upstream === 'down') body.reason = 'upstream not reachable'
  return { ready, body, report: h }
}

/** The ops listener (docs/DESIGN.md §5, §9): liveness, readiness, metrics, the assertion JWKS. No auth hook lives here. */
export function buildOpsApp (opts: OpsOptions): FastifyInstance {
  const app: FastifyInstance = Fastify(internalFastifyOptions(opts.log))
  app.setErrorHandler(errorHandler)
  app.setNotFoundHandler((_req, reply) => sendError(reply, HG_ERR_NOT_FOUND))

  app.get('/healthz', async () => ({ status: 'ok' }))

  app.get('/readyz', async (_req, reply) => {
    const r = await readiness(opts.health)
    return reply.code(r.ready ? 200 : 503).send(r.body)
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
