import { randomUUID } from 'node:crypto'
import type { Server } from 'node:http'
import { LogController, type FastifyBaseLogger, type FastifyHttpOptions } from 'fastify'
import { saneRequestId } from './request-id.js'
import { trustProxyOption, type Config } from '../config/schema.js'
import { lazyChildLogger, type Logger } from '../logger.js'
import { clientErrorHandler, frameworkErrorHandler } from './reply.js'

type Options = FastifyHttpOptions<Server, FastifyBaseLogger>

/**
 * Node's header timeout (docs/DESIGN.md §2.1): a connection that has not sent a
 * whole request header in time gets 408 and is closed, so half-open
 * connections give their slot under the cap back. Checked every second
 * (Node's default is every 30 s, on top of its 60 s timeout).
 */
function serverOptions (config: Config): NonNullable<Options['http']> {
  return { headersTimeout: config.server.headersTimeoutMs, connectionsCheckingInterval: 1000 }
}

/** The proxy listener's fastify options: request ids, lazy request loggers, every error body through the reply writer. */
export function fastifyOptions (config: Config, log: Logger): Options {
  return {
    http: serverOptions(config),
    loggerInstance: log as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    childLoggerFactory: lazyChildLogger as unknown as NonNullable<Options['childLoggerFactory']>,
    trustProxy: trustProxyOption(config.server.trustProxy),
    genReqId: req => saneRequestId(req.headers['x-request-id']) ?? randomUUID(),
    return503OnClosing: true,
    frameworkErrors: frameworkErrorHandler,
    clientErrorHandler
  }
}

/** The ops and admin listeners: the same logger and error bodies, no request ids from clients. */
export function internalFastifyOptions (log: Logger): Options {
  return {
    loggerInstance: log as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    frameworkErrors: frameworkErrorHandler,
    clientErrorHandler
  }
}
