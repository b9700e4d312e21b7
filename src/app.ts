import { randomUUID } from 'node:crypto'
import type { Server } from 'node:http'
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyHttpOptions, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import type { AssertionSigner } from './auth/assertion.js'
import { registerAssertionHook } from './auth/assertion-hook.js'
import { createApiKeyAuthenticator } from './auth/authenticators/api-key.js'
import { createPatAuthenticator } from './auth/authenticators/pat.js'
import { createBcryptPool, type BcryptPool } from './auth/bcrypt-pool.js'
import { saneRequestId } from './auth/identity-headers.js'
import { createMemo, type Memo } from './auth/memo.js'
import { createPipeline } from './auth/pipeline.js'
import { registerAuthHook } from './auth/plugin.js'
import { createPolicy } from './auth/policy.js'
import { createRoleTable, type RoleTable } from './auth/principal.js'
import { createFailureLimiter } from './auth/rate-limit.js'
import type { Config } from './config/schema.js'
import { maskCredentials } from './credentials/format.js'
import { errorDef, HG_ERR_INTERNAL, HG_ERR_NOT_FOUND, HG_ERR_OVERLOADED, HG_ERR_REQUEST_BAD, RETRY_AFTER_SECONDS, type ErrorDef } from './errors.js'
import { createLogger, lazyChildLogger, type Logger } from './logger.js'
import underPressure from '@fastify/under-pressure'
import { buildAdminApp } from './api/admin.js'
import { registerSelfService, SELF_SERVICE_PREFIXES } from './api/self-service.js'
import { createLastUsedRecorder, type LastUsedRecorder } from './auth/last-used.js'
import { createCredentialService, type CredentialService } from './credentials/service.js'
import { createMetrics, type Metrics } from './ops/metrics.js'
import { buildOpsApp, type Health } from './ops/server.js'
import proxyPlugin from './proxy/plugin.js'
import { createBatcher } from './store/batcher.js'
import { LATEST_VERSION, migrate, schemaVersion } from './store/migrate.js'
import { createDb, type Db } from './store/postgres.js'
import { createMemoryPrefixCache, createRedisPrefixCache, type PrefixCache } from './store/prefix-cache.js'
import { apiKeyStates, patCandidates, patStates, touchApiKeys, touchPats } from './store/queries.js'

export interface SidecarOptions {
  logger?: Logger
}

export interface Sidecar {
  config: Config
  log: Logger
  db: Db
  cache: PrefixCache
  memo: Memo
  bcrypt: BcryptPool
  roles: RoleTable
  health: Health
  metrics: Metrics
  lastUsed: LastUsedRecorder
  service: CredentialService
  /** Signs x-hg-assertion (DESIGN.md 9); null when assertion.enabled is false. */
  assertion: AssertionSigner | null
  proxy: FastifyInstance
  ops: FastifyInstance
  admin: FastifyInstance
  /** Starts the listeners; resolves with the ports actually bound (0 in config = any free port). */
  listen(): Promise<{ port: number, opsPort: number, adminPort: number }>
  /** Marks not ready, drains in-flight requests, closes the pools. Idempotent. */
  close(): Promise<void>
}

/** Sends a registered error as the contract's `{ error, message }` body. */
export function sendError (reply: FastifyReply, def: ErrorDef, body?: string): FastifyReply {
  reply.code(def.status).header('content-type', 'application/json; charset=utf-8')
  if (def.status === 503 || def.status === 429) reply.header('retry-after', String(RETRY_AFTER_SECONDS))
  return reply.send(body ?? def.body)
}

/** One error handler for every listener: registered codes map to their body, the rest is never echoed. */
export function errorHandler (error: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const err = error as FastifyError
  const def = errorDef(err.code)
  if (def !== undefined) {
    if (def.status >= 500) request.log.error({ err }, 'request failed')
    const body = err.message !== def.message && def.status < 500 ? JSON.stringify({ error: def.publicCode, message: err.message }) : undefined
    return sendError(reply, def, body)
  }
  const status = err.statusCode ?? 500
  if (status >= 400 && status < 500) {
    const message = err.validation !== undefined ? maskCredentials(err.message) : HG_ERR_REQUEST_BAD.message
    return sendError(reply, status === 404 ? HG_ERR_NOT_FOUND : { ...HG_ERR_REQUEST_BAD, status }, JSON.stringify({ error: status === 404 ? 'not_found' : 'bad_request', message }))
  }
  request.log.error({ err }, 'request failed')
  return sendError(reply, HG_ERR_INTERNAL)
}

export function fastifyOptions (config: Config, log: Logger): FastifyHttpOptions<Server, FastifyBaseLogger> {
  return {
    loggerInstance: log as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    childLoggerFactory: lazyChildLogger as unknown as NonNullable<FastifyHttpOptions<Server, FastifyBaseLogger>['childLoggerFactory']>,
    trustProxy: config.server.trustProxy,
    genReqId: req => saneRequestId(req.headers['x-request-id']) ?? randomUUID(),
    return503OnClosing: true,
    frameworkErrors: (_err, _req, reply) => sendError(reply, HG_ERR_REQUEST_BAD)
  }
}

function hasOverloadLimits (config: Config): boolean {
  const o = config.server.overload
  return o.maxEventLoopDelayMs > 0 || o.maxEventLoopUtilization > 0 || o.maxHeapUsedBytes > 0 || o.maxRssBytes > 0
}

/** The assertion signer when enabled: its keys read (or generated) before anything else starts, so a bad key file fails fast. */
async function createAssertion (config: Config, log: Logger): Promise<AssertionSigner | null> {
  const a = config.assertion
  if (!a.enabled) return null
  if (a.audience === null) throw new Error('assertion.audience is required when assertion.enabled is true')
  // Loaded only when enabled (off by default): jose stays out of a sidecar that signs nothing.
  const { createAssertionSigner, loadAssertionKeys } = await import('./auth/assertion.js')
  const keys = await loadAssertionKeys(a.keyFile)
  if (keys.generated) {
    log.info({ kid: keys.signing.kid }, 'assertion signing key generated at start (no assertion.keyFile): this process publishes it alone')
  } else {
    log.info({ kid: keys.signing.kid, published: keys.published.map(k => k.kid) }, 'assertion signing key loaded')
  }
  return createAssertionSigner({ keys, issuer: a.issuer, audience: a.audience, ttlSeconds: a.ttlSeconds, maxEntries: a.cacheMaxEntries })
}

export async function createSidecar (config: Config, options: SidecarOptions = {}): Promise<Sidecar> {
  const log = options.logger ?? createLogger(config.logLevel)
  if (config.database.url === null) throw new Error('createSidecar needs database.url (the embedded database is resolved by the server)')
  if (config.upstream.url === null) throw new Error('createSidecar needs upstream.url (the demo upstream is resolved by the server)')
  const upstreamUrl = config.upstream.url
  const assertion = await createAssertion(config, log)

  const db = createDb({
    url: config.database.url,
    poolSize: config.database.poolSize,
    connectTimeoutMs: config.database.connectTimeoutMs,
    queryTimeoutMs: config.database.queryTimeoutMs
  })
  const cache = config.redis.url === null
    ? createMemoryPrefixCache({ ttlSeconds: config.auth.prefixCacheTtlSeconds, maxEntries: config.auth.prefixCacheMaxEntries })
    : createRedisPrefixCache({
      url: config.redis.url,
      keyPrefix: config.redis.keyPrefix,
      ttlSeconds: config.auth.prefixCacheTtlSeconds,
      commandTimeoutMs: config.redis.commandTimeoutMs,
      onError: err => log.warn({ err: { message: err.message, code: (err as { code?: string }).code } }, 'redis unavailable; PostgreSQL serves the lookups')
    })

  const memo = createMemo({
    ttlSeconds: config.auth.memoTtlSeconds,
    maxEntries: config.auth.memoMaxEntries,
    negativeTtlSeconds: config.auth.negativeMemoTtlSeconds,
    negativeMaxEntries: config.auth.negativeMemoMaxEntries
  })
  const bcrypt = createBcryptPool({ concurrency: config.auth.bcryptConcurrency, queueSize: config.auth.bcryptQueueSize })
  const roles = createRoleTable(config.roles)
  const policy = createPolicy(config, SELF_SERVICE_PREFIXES)
  const metrics = createMetrics({
    bcryptQueue: () => bcrypt.queued,
    bcryptActive: () => bcrypt.active,
    dbPool: () => db.stats(),
    memoSize: () => memo.size
  })
  db.onQuery(metrics.dbQuery)
  cache.onResult(metrics.prefixCache)
  bcrypt.onCompare(metrics.bcrypt)
  bcrypt.onReject(metrics.bcryptRejected)
  const lastUsed = createLastUsedRecorder({
    flushIntervalMs: config.auth.lastUsed.flushIntervalMs,
    minIntervalMs: config.auth.lastUsed.minIntervalSeconds * 1000,
    write: async (kind, ids, at) => {
      await (kind === 'pat' ? touchPats(db, ids, at) : touchApiKeys(db, ids, at))
      metrics.lastUsedWrites(kind, ids.length)
    },
    onError: err => log.warn({ err }, 'last_used_at write failed')
  })
  const service = createCredentialService({ db, cache, roles, config })

  const pipeline = createPipeline({
    policy,
    limiter: createFailureLimiter(config.auth.rateLimit),
    apiKeys: config.auth.apiKeys,
    authenticatePat: createPatAuthenticator({
      memo,
      bcrypt,
      cache,
      roles,
      loadCandidates: prefix => patCandidates(db, prefix),
      states: createBatcher(ids => patStates(db, ids), { maxInFlight: config.database.stateQueriesInFlight }),
      onMemo: metrics.memo
    }),
    authenticateApiKey: createApiKeyAuthenticator({
      roles,
      states: createBatcher(hashes => apiKeyStates(db, hashes.map(h => Buffer.from(h, 'hex'))), { maxInFlight: config.database.stateQueriesInFlight })
    })
  })

  const health: Health = {
    shuttingDown: false,
    async check () {
      const [version, pgOk] = await Promise.all([
        schemaVersion(db.pool).catch(() => -1),
        db.ping()
      ])
      return {
        postgres: pgOk && version >= 0 ? 'ok' : 'down',
        migrated: version >= LATEST_VERSION,
        redis: cache.status()
      }
    }
  }

  const proxy: FastifyInstance = Fastify(fastifyOptions(config, log))
  proxy.setErrorHandler(errorHandler)
  proxy.setNotFoundHandler((_req, reply) => sendError(reply, HG_ERR_NOT_FOUND))
  proxy.removeAllContentTypeParsers()
  // Bodies are never buffered: the raw stream goes to the upstream as it arrives.
  proxy.addContentTypeParser('*', (_req, payload, done) => done(null, payload))
  if (hasOverloadLimits(config)) {
    await proxy.register(underPressure, {
      maxEventLoopDelay: config.server.overload.maxEventLoopDelayMs,
      maxEventLoopUtilization: config.server.overload.maxEventLoopUtilization,
      maxHeapUsedBytes: config.server.overload.maxHeapUsedBytes,
      maxRssBytes: config.server.overload.maxRssBytes,
      retryAfter: RETRY_AFTER_SECONDS,
      pressureHandler: (_req, reply) => {
        metrics.overloaded()
        sendError(reply, HG_ERR_OVERLOADED)
      }
    })
  }
  registerAuthHook(proxy, {
    pipeline,
    onDecision (result, seconds) {
      const type = result.kind ?? 'none'
      metrics.authDecision(type, result.pass ? 'allow' : 'deny', result.reason, seconds)
      if (result.pass && result.principal !== null) lastUsed.record(result.principal.type, result.principal.credentialId)
    }
  })
  if (assertion !== null) registerAssertionHook(proxy, assertion)
  registerSelfService(proxy, { service })
  // One line per request at info level. The level is fixed for the process, so below
  // info the hook is not registered at all (one hook less per request).
  if (log.isLevelEnabled('info')) {
    proxy.addHook('onResponse', (request, reply, done) => {
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
  await proxy.register(proxyPlugin, {
    upstream: upstreamUrl,
    timeoutMs: config.upstream.timeoutMs,
    connections: config.upstream.connections,
    stripCredentialHeader: config.auth.stripCredentialHeader,
    trustProxy: config.server.trustProxy,
    onUpstreamResponse: metrics.upstream
  })

  const ops = buildOpsApp({ log, health, metrics: metrics.render, ...(assertion === null ? {} : { jwks: assertion.jwks }) })
  const admin = await buildAdminApp({ log, service, adminToken: config.adminToken, errorHandler })

  if (config.database.migrateOnStart) {
    try {
      const res = await migrate(db.pool)
      if (res.applied.length > 0) log.info({ applied: res.applied, version: res.current }, 'migrations applied')
    } catch (err) {
      await db.close()
      await cache.close()
      throw err
    }
  }

  let closing: Promise<void> | null = null
  return {
    config,
    log,
    db,
    cache,
    memo,
    bcrypt,
    roles,
    health,
    metrics,
    lastUsed,
    service,
    assertion,
    proxy,
    ops,
    admin,
    async listen () {
      await ops.listen({ host: config.server.host, port: config.server.opsPort })
      await admin.listen({ host: config.server.adminHost, port: config.server.adminPort })
      await proxy.listen({ host: config.server.host, port: config.server.port })
      const port = (proxy.server.address() as { port: number }).port
      const opsPort = (ops.server.address() as { port: number }).port
      const adminPort = (admin.server.address() as { port: number }).port
      return { port, opsPort, adminPort }
    },
    close () {
      closing ??= (async () => {
        // Readiness answers 503 from here on; in-flight requests finish, new ones are refused.
        health.shuttingDown = true
        await Promise.allSettled([proxy.close(), admin.close()])
        await lastUsed.close()
        await ops.close()
        await Promise.allSettled([db.close(), cache.close()])
      })()
      return closing
    }
  }
}
