import type { FastifyInstance } from 'fastify'
import { buildAdminApp } from './api/admin.js'
import { createAudit } from './audit/create-audit.js'
import type { Retention } from './audit/retention.js'
import type { UseEventRecorder } from './audit/use-events.js'
import { SELF_SERVICE_PREFIXES } from './api/self-service.js'
import type { BcryptPool } from './auth/bcrypt-pool.js'
import type { AssertionSigner } from './auth/assertion.js'
import { createAssertion } from './auth/assertion-hook.js'
import { createAuth } from './auth/create-auth.js'
import type { LastUsedRecorder } from './auth/last-used.js'
import type { Memo } from './auth/memo.js'
import type { RoleTable } from './auth/principal.js'
import { checkAdminExposure } from './config/load.js'
import type { Config } from './config/schema.js'
import { createLogger, type Logger } from './logger.js'
import { createCredentialService, type CredentialService } from './management/service.js'
import { createHealth, dependencyReadiness, type Health } from './ops/health.js'
import { createLifecycle, type Lifecycle } from './ops/lifecycle.js'
import { createMetrics, type Metrics } from './ops/metrics.js'
import { buildOpsApp, readiness } from './ops/server.js'
import { createUpstreamCheck } from './ops/upstream-check.js'
import { buildProxyApp } from './proxy/app.js'
import { prepareDatabase } from './store/migrate.js'
import { openStore } from './store/open.js'
import type { Db } from './store/postgres.js'
import type { PrefixCache } from './store/prefix-cache.js'

export interface SidecarOptions {
  logger?: Logger
  /** The memo's clock (ms) and random source (its TTL jitter): injected by tests. */
  now?: () => number
  random?: () => number
  /** The bcrypt compare: tests wrap it to hold one in flight (BcryptPoolOptions.compare). */
  bcryptCompare?: (secret: string, hash: string) => Promise<boolean>
}

export interface Sidecar extends Lifecycle {
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
  /** Refused uses of known credentials, coalesced and written off the request path (docs/DESIGN.md §10). */
  useEvents: UseEventRecorder
  retention: Retention
  service: CredentialService
  /** Signs x-hg-assertion (docs/DESIGN.md §9); null when assertion.enabled is false. */
  assertion: AssertionSigner | null
  proxy: FastifyInstance
  ops: FastifyInstance
  admin: FastifyInstance
}

/** The composition root: builds every part from the config and wires them. Never listens by itself. */
export async function createSidecar (config: Config, options: SidecarOptions = {}): Promise<Sidecar> {
  checkAdminExposure(config)
  const log = options.logger ?? createLogger(config.logLevel)
  const assertion = await createAssertion(config, log)
  const store = openStore(config, { log })
  const { db, cache } = store
  const metrics = createMetrics({
    bcryptQueue: () => auth.bcrypt.queued,
    bcryptActive: () => auth.bcrypt.active,
    bcryptConcurrency: () => auth.bcrypt.concurrency,
    bcryptBackgroundQueue: () => auth.bcrypt.backgroundQueued,
    dbPool: () => db.stats(),
    memoSize: () => auth.memo.size,
    readiness: async () => dependencyReadiness(await readiness(health))
  })
  db.onQuery(metrics.dbQuery)
  cache.onResult(metrics.prefixCache)
  const auth = createAuth(config, { log, db, cache, redis: store.redis, localPrefixes: SELF_SERVICE_PREFIXES, observe: metrics, now: options.now, random: options.random, bcryptCompare: options.bcryptCompare })
  const { memo, bcrypt, roles, lastUsed } = auth
  // With the upstream check on, a pod is not Ready before its app listens.
  const health = createHealth({ db, redis: () => cache.status(), upstream: config.upstream.readinessCheck && config.upstream.url !== null ? createUpstreamCheck({ url: config.upstream.url }) : null })
  const service = createCredentialService({ db, cache, roles, config })
  const audit = createAudit(config, { db, log, auth, service, observe: metrics })
  const { useEvents, retention } = audit

  const proxy = await buildProxyApp({
    config,
    log,
    pipeline: auth.pipeline,
    service,
    assertion,
    onDecision (result, seconds, request) {
      metrics.authDecision(result.kind ?? 'none', result.pass ? 'allow' : 'deny', result.reason, seconds)
      if (result.pass) {
        if (result.principal !== null) lastUsed.record(result.principal.type, result.principal.credentialId)
      } else if (result.credential !== undefined) {
        useEvents.record(result.reason, result.credential, request.ip, request.id)
      }
    },
    onOverload: metrics.overloaded,
    onUpstreamResponse: metrics.upstream,
    onUpstreamError: metrics.upstreamError
  })
  const ops = buildOpsApp({ log, health, metrics: metrics.render, ...(assertion === null ? {} : { jwks: assertion.jwks }) })
  const admin = await buildAdminApp({ log, service, adminToken: config.adminToken, audit: { listEvents: audit.listEvents, leaks: audit.leaks } })

  try {
    await prepareDatabase(db, config.database, log)
  } catch (err) {
    await Promise.allSettled([audit.close(), lastUsed.close()])
    await store.close()
    throw err
  }

  const lifecycle = createLifecycle(config, { log, health, proxy, ops, admin, flush: [lastUsed, audit], store })
  return { config, log, db, cache, memo, bcrypt, roles, health, metrics, lastUsed, useEvents, retention, service, assertion, proxy, ops, admin, ...lifecycle }
}
