import Fastify, { type FastifyInstance } from 'fastify'
import { registerSelfService } from '../api/self-service.js'
import type { AssertionSigner } from '../auth/assertion.js'
import { registerAssertionHook } from '../auth/assertion-hook.js'
import { registerAuthHook, type AuthHookOptions } from '../auth/plugin.js'
import type { Pipeline } from '../auth/pipeline.js'
import { trustProxyOption, type Config } from '../config/schema.js'
import { HG_ERR_NOT_FOUND, HG_ERR_OVERLOADED, RETRY_AFTER_SECONDS } from '../errors.js'
import { fastifyOptions } from '../http/options.js'
import { overloadEnabled, registerOverload } from '../http/overload.js'
import { errorHandler, sendError } from '../http/reply.js'
import type { Logger } from '../logger.js'
import type { CredentialService } from '../management/service.js'
import { registerRequestLog } from '../ops/request-log.js'
import { registerBodyTimeout } from './body-timeout.js'
import proxyPlugin from './plugin.js'

export interface ProxyAppOptions {
  config: Config
  log: Logger
  pipeline: Pipeline
  service: CredentialService
  /** Signs x-hg-assertion (docs/DESIGN.md §9); null when disabled. */
  assertion: AssertionSigner | null
  onDecision: AuthHookOptions['onDecision']
  onOverload: () => void
  onUpstreamResponse: (statusCode: number, seconds: number) => void
  onUpstreamError?: (kind: 'timeout' | 'refused') => void
}

/** The proxy port (docs/DESIGN.md §2): overload shedding, the auth hook, self-service, the request log, the proxy. */
export async function buildProxyApp (opts: ProxyAppOptions): Promise<FastifyInstance> {
  const { config } = opts
  const app: FastifyInstance = Fastify(fastifyOptions(config, opts.log))
  app.setErrorHandler(errorHandler)
  app.setNotFoundHandler((_req, reply) => sendError(reply, HG_ERR_NOT_FOUND))
  app.removeAllContentTypeParsers()
  // Bodies are never buffered: the raw stream goes to the upstream as it arrives.
  app.addContentTypeParser('*', (_req, payload, done) => done(null, payload))
  const o = config.server.overload
  if (overloadEnabled(o)) {
    registerOverload(app, {
      ...o,
      onPressure: (_req, reply) => {
        opts.onOverload()
        sendError(reply, HG_ERR_OVERLOADED, { retryAfter: RETRY_AFTER_SECONDS })
      }
    })
  }
  // Before authentication: public routes stream bodies to the upstream too.
  registerBodyTimeout(app, {
    idleTimeoutMs: config.server.bodyIdleTimeoutMs,
    minBytesPerSecond: config.server.bodyMinBytesPerSecond,
    maxPerClient: config.server.maxBodiesPerClient
  })
  registerAuthHook(app, { pipeline: opts.pipeline, onDecision: opts.onDecision })
  if (opts.assertion !== null) registerAssertionHook(app, opts.assertion)
  registerSelfService(app, { service: opts.service })
  registerRequestLog(app, opts.log)
  if (config.upstream.url === null) throw new Error('buildProxyApp needs upstream.url (the demo upstream is resolved by the server)')
  await app.register(proxyPlugin, {
    upstream: config.upstream.url,
    timeoutMs: config.upstream.timeoutMs,
    connections: config.upstream.connections,
    stripCredentialHeader: config.auth.stripCredentialHeader,
    trustProxy: trustProxyOption(config.server.trustProxy) !== false,
    allowHeaders: config.upstream.allowHeaders,
    onUpstreamResponse: opts.onUpstreamResponse,
    onUpstreamError: opts.onUpstreamError
  })
  return app
}
