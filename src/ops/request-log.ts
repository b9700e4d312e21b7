import type { FastifyInstance } from 'fastify'
import type { Logger } from '../logger.js'
import { maskCredentials } from '../mask.js'

/**
 * One line per request at info level. The level is fixed for the process, so
 * below info the hook is not registered at all (one hook less per request).
 */
export function registerRequestLog (app: FastifyInstance, log: Logger): void {
  if (!log.isLevelEnabled('info')) return
  app.addHook('onResponse', (request, reply, done) => {
    const url = request.raw.url ?? ''
    const q = url.indexOf('?')
    const hg = request.hg
    // Through the process logger with the request id as the first field: the same line
    // a request child would write, without making a pino child for every request.
    log.info({
      reqId: request.id,
      method: request.method,
      path: maskCredentials(q === -1 ? url : url.slice(0, q)),
      status: reply.statusCode,
      ms: Math.round(reply.elapsedTime * 100) / 100,
      credType: hg?.kind ?? null,
      prefix: hg?.prefix ?? null,
      outcome: hg?.reason ?? null
    }, 'request')
    done()
  })
}
