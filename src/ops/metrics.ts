import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'
import { packageVersion } from '../version.js'
import { FastCounter, FastHistogram, LabelTree } from './fast-metrics.js'

/** docs/DESIGN.md §5: `hg_` prefix, base units, `_total` counters; no label ever holds a token, a path or a user id. */
export interface Metrics {
  registry: Registry
  authDecision(type: string, result: 'allow' | 'deny', reason: string, seconds: number): void
  bcrypt(seconds: number): void
  bcryptRejected(): void
  prefixCache(result: string): void
  memo(result: string): void
  verifyShared(): void
  memoRefresh(result: string): void
  dbQuery(query: string, seconds: number, ok: boolean): void
  upstream(statusCode: number, seconds: number): void
  /** A 502 or 504 the sidecar answered because the upstream refused the connection or timed out. */
  upstreamError(kind: 'refused' | 'timeout'): void
  lastUsedWrites(kind: string, count: number): void
  /** Rows written to credential_events, by kind. */
  credentialEvents(kind: string, count: number): void
  /** Use-events not written: the queue was full or the database kept failing. */
  credentialEventsDropped(count: number): void
  /** Expired credential events deleted by the retention sweep. */
  credentialEventsExpired(count: number): void
  overloaded(): void
  render(): Promise<{ contentType: string, body: string }>
}

export interface MetricsSources {
  bcryptQueue: () => number
  bcryptActive: () => number
  bcryptConcurrency?: () => number
  bcryptBackgroundQueue: () => number
  dbPool: () => { total: number, idle: number, waiting: number, max: number }
  memoSize: () => number
  /** What /readyz would answer, evaluated on each scrape (hg_ready, hg_dependency_up). */
  readiness?: () => Promise<Readiness>
}

export interface Readiness {
  ready: boolean
  /** 1 = reachable; a dependency that is not configured or not checked is absent. */
  dependencies: Record<string, boolean>
}

/**
 * Label sets exported at 0 from the start: an alert's rate() or ratio then has a
 * series before the first event, and sees the first increment (a series that
 * appears at 1 has no earlier sample to rise from).
 */
const INITIAL_DECISIONS: ReadonlyArray<readonly [string, 'allow' | 'deny', string]> = [
  ['none', 'allow', 'public'],
  ...['missing', 'malformed', 'rate_limited', 'bad_request'].map(r => ['none', 'deny', r] as const),
  ['pat', 'allow', 'ok'],
  ...['unknown', 'bad_secret', 'revoked', 'expired', 'suspended', 'not_member', 'forbidden', 'rate_limited', 'unavailable'].map(r => ['pat', 'deny', r] as const),
  ['api_key', 'allow', 'ok'],
  ...['unknown', 'revoked', 'expired', 'forbidden', 'rate_limited', 'unavailable'].map(r => ['api_key', 'deny', r] as const)
]
/** The statements of the request path (without the hg_ every statement name starts with). */
const INITIAL_QUERIES = ['pat_prefix', 'pat_tagged', 'pat_states', 'api_key_states']

/** Default metrics promtool refuses: gauges named `_total` (their per-type gauges without `_total` stay). */
const DROPPED_DEFAULTS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
const BCRYPT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]

export function createMetrics (sources: MetricsSources): Metrics {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  for (const name of DROPPED_DEFAULTS) registry.removeSingleMetric(name)

  // Per-request metrics: FastCounter/FastHistogram (fast-metrics.ts says why).
  const decisions = new FastCounter('hg_auth_decisions_total', 'Authentication decisions by credential type, result and reason', ['type', 'result', 'reason'], registry)
  const authDuration = new FastHistogram('hg_auth_duration_seconds', 'Time the auth pipeline took per request', ['type', 'result'], LATENCY_BUCKETS, registry)
  const bcryptDuration = new Histogram({ name: 'hg_bcrypt_duration_seconds', help: 'bcrypt compare time', buckets: BCRYPT_BUCKETS, registers: [registry] })
  const bcryptRejections = new Counter({ name: 'hg_bcrypt_rejections_total', help: 'bcrypt work refused because the queue was full (503)', registers: [registry] })
  const cache = new Counter({ name: 'hg_prefix_cache_requests_total', help: 'Prefix cache lookups by result', labelNames: ['result'], registers: [registry] })
  const memo = new FastCounter('hg_verify_memo_requests_total', 'Verification memo lookups by result', ['result'], registry)
  const shared = new Counter({ name: 'hg_verify_shared_total', help: 'Requests that waited for a verification of the same credential already running instead of starting their own', registers: [registry] })
  const refreshes = new Counter({ name: 'hg_verify_memo_refreshes_total', help: 'Background re-verifications of memo entries near the end of their lifetime, by result', labelNames: ['result'], registers: [registry] })
  const dbDuration = new FastHistogram('hg_db_query_duration_seconds', 'PostgreSQL query time by statement', ['query', 'result'], LATENCY_BUCKETS, registry)
  const upstreamResponses = new FastCounter('hg_upstream_responses_total', 'Responses from the upstream by status class', ['status_class'], registry)
  const upstreamDuration = new FastHistogram('hg_upstream_duration_seconds', 'Upstream time to response headers', ['status_class'], LATENCY_BUCKETS, registry)
  const upstreamErrors = new FastCounter('hg_upstream_errors_total', 'Requests answered 502 (upstream refused) or 504 (upstream timed out) by the sidecar', ['error'], registry)
  const lastUsed = new Counter({ name: 'hg_last_used_writes_total', help: 'Credentials whose last_used_at was written', labelNames: ['type'], registers: [registry] })
  const events = new Counter({ name: 'hg_credential_events_total', help: 'Credential events written by this process, by kind', labelNames: ['kind'], registers: [registry] })
  const eventsDropped = new Counter({ name: 'hg_credential_events_dropped_total', help: 'Use-events dropped (queue full or writes failing)', registers: [registry] })
  const eventsExpired = new Counter({ name: 'hg_credential_events_expired_total', help: 'Credential events deleted by the retention sweep', registers: [registry] })
  const overload = new Counter({ name: 'hg_overload_rejections_total', help: 'Requests refused by load shedding (503)', registers: [registry] })

  /* eslint-disable no-new -- gauges register themselves and read their sources on scrape */
  new Gauge({ name: 'hg_bcrypt_queue_depth', help: 'bcrypt compares waiting for a slot', registers: [registry], collect () { this.set(sources.bcryptQueue()) } })
  new Gauge({ name: 'hg_bcrypt_active', help: 'bcrypt compares running', registers: [registry], collect () { this.set(sources.bcryptActive()) } })
  new Gauge({ name: 'hg_bcrypt_background_queue_depth', help: 'Background bcrypt compares (memo refreshes) waiting for an idle slot', registers: [registry], collect () { this.set(sources.bcryptBackgroundQueue()) } })
  new Gauge({ name: 'hg_verify_memo_entries', help: 'Entries in the verification memo', registers: [registry], collect () { this.set(sources.memoSize()) } })
  new Gauge({ name: 'hg_bcrypt_concurrency', help: 'bcrypt compares allowed to run at once (auth.bcryptConcurrency)', registers: [registry], collect () { this.set(sources.bcryptConcurrency?.() ?? 0) } })
  new Gauge({ name: 'hg_db_pool_connections', help: 'PostgreSQL connections open in the pool (busy and idle)', registers: [registry], collect () { this.set(sources.dbPool().total) } })
  new Gauge({ name: 'hg_db_pool_idle_connections', help: 'PostgreSQL connections open and idle', registers: [registry], collect () { this.set(sources.dbPool().idle) } })
  new Gauge({ name: 'hg_db_pool_waiting_clients', help: 'Queries waiting for a pool connection', registers: [registry], collect () { this.set(sources.dbPool().waiting) } })
  new Gauge({ name: 'hg_db_pool_max_connections', help: 'Pool size limit (database.poolSize)', registers: [registry], collect () { this.set(sources.dbPool().max) } })
  new Gauge({ name: 'hg_build_info', help: 'Version of the sidecar and of Node.js; always 1', labelNames: ['version', 'node'], registers: [registry] })
    .set({ version: packageVersion(), node: process.version }, 1)
  const readiness = sources.readiness
  if (readiness !== undefined) {
    // One check per scrape for both gauges: hg_ready starts it, hg_dependency_up (registered after) takes it over.
    let pending: Promise<Readiness> | null = null
    new Gauge({
      name: 'hg_ready',
      help: '1 when /readyz answers 200, else 0',
      registers: [registry],
      async collect () {
        pending = readiness()
        this.set((await pending).ready ? 1 : 0)
      }
    })
    new Gauge({
      name: 'hg_dependency_up',
      help: 'Whether a dependency passed the readiness check (1) or not (0); absent when not configured or not checked',
      labelNames: ['dependency'],
      registers: [registry],
      async collect () {
        const p = pending ?? readiness()
        pending = null
        const r = await p
        this.reset()
        for (const [dependency, up] of Object.entries(r.dependencies)) this.set({ dependency }, up ? 1 : 0)
      }
    })
  }
  /* eslint-enable no-new */

  const CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx']
  const statusClass = (code: number): string => code >= 100 && code < 600 ? CLASSES[Math.floor(code / 100) - 1] ?? 'other' : 'other'

  // Records looked up once per label set (LabelTree: no key string per call); the hot path then only increments.
  function cached<T> (make: (labels: readonly string[]) => T): (...labels: string[]) => T {
    const tree = new LabelTree<T>()
    return (...labels) => tree.lookup(labels, make)
  }
  const cacheChild = cached(([result = '']) => cache.labels({ result }))
  // One record per decision (type, result, reason): its counter and its duration histogram together.
  const decisionRecord = cached(([type = '', result = '', reason = '']) => ({ count: decisions.child(type, result, reason), duration: authDuration.child(type, result) }))
  const upstreamRecord = cached(([c = '']) => ({ count: upstreamResponses.child(c), duration: upstreamDuration.child(c) }))
  // Statement names carry the hg_ prefix (a namespace in the PostgreSQL session); the label does not repeat it.
  const queryRecord = cached(([name = '', result = '']) => dbDuration.child(name.startsWith('hg_') ? name.slice(3) : name, result))

  for (const [type, result, reason] of INITIAL_DECISIONS) decisionRecord(type, result, reason)
  for (const c of ['2xx', '3xx', '4xx', '5xx']) upstreamRecord(c)
  for (const e of ['refused', 'timeout']) upstreamErrors.child(e)
  for (const q of INITIAL_QUERIES) for (const r of ['ok', 'error']) queryRecord(`hg_${q}`, r)
  for (const result of ['hit', 'miss', 'error']) cache.inc({ result }, 0)
  for (const r of ['hit', 'miss', 'stale']) memo.child(r)
  for (const type of ['pat', 'api_key']) lastUsed.inc({ type }, 0)

  return {
    registry,
    authDecision (type, result, reason, seconds) {
      const r = decisionRecord(type, result, reason)
      r.count.inc()
      r.duration.observe(seconds)
    },
    bcrypt: seconds => bcryptDuration.observe(seconds),
    bcryptRejected: () => bcryptRejections.inc(),
    prefixCache: result => cacheChild(result).inc(),
    memo: result => memo.child(result).inc(),
    verifyShared: () => shared.inc(),
    memoRefresh: result => refreshes.inc({ result }),
    dbQuery: (query, seconds, ok) => queryRecord(query, ok ? 'ok' : 'error').observe(seconds),
    upstream (code, seconds) {
      const r = upstreamRecord(statusClass(code))
      r.count.inc()
      r.duration.observe(seconds)
    },
    upstreamError: error => upstreamErrors.child(error).inc(),
    lastUsedWrites: (kind, count) => lastUsed.inc({ type: kind }, count),
    credentialEvents: (kind, count) => events.inc({ kind }, count),
    credentialEventsDropped: count => eventsDropped.inc(count),
    credentialEventsExpired: count => eventsExpired.inc(count),
    overloaded: () => overload.inc(),
    async render () {
      return { contentType: registry.contentType, body: await registry.metrics() }
    }
  }
}
