import { randomUUID } from 'node:crypto'
import type { Server } from 'node:http'
import { LogController, type FastifyBaseLogger, type FastifyHttpOptions } from 'fastify'
import { saneRequestId } from './request-id.js'
import { trustProxyOption, type Config } from '../config/schema.js'
import { lazyChildLogger, type Logger } from '../logger.js'
import { clientErrorHandler, frameworkErrorHandler } from './reply.js'

type Options = FastifyHttpOptions<Server, FastifyBaseLogger>

/**
 * How often Node checks the header timeout (docs/DESIGN.md §2.1), which
 * http/limits.ts sets: every second, not Node's 30 s, so half-open connections
 * give their slot under the cap back on time. Only settable at creation.
 */
const SERVER_OPTIONS: NonNullable<Options['http']> = { connectionsCheckingInterval: 1000 }

/** The proxy listener's fastify options: request ids, lazy request loggers, every error body through the reply writer. */
export function fastifyOptions (config: Config, log: Logger): Options {
  return {
    http: SERVER_OPTIONS,
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
