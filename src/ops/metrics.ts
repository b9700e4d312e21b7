import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'
import { FastCounter, FastHistogram, LabelTree } from './fast-metrics.js'

/** DESIGN.md 5: `hg_` prefix, base units, `_total` counters; no label ever holds a token, a path or a user id. */
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
  lastUsedWrites(kind: string, count: number): void
  overloaded(): void
  render(): Promise<{ contentType: string, body: string }>
}

export interface MetricsSources {
  bcryptQueue: () => number
  bcryptActive: () => number
  bcryptBackgroundQueue: () => number
  dbPool: () => { total: number, idle: number, waiting: number, max: number }
  memoSize: () => number
}

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
const BCRYPT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]

export function createMetrics (sources: MetricsSources): Metrics {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })

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
  const lastUsed = new Counter({ name: 'hg_last_used_writes_total', help: 'Credentials whose last_used_at was written', labelNames: ['type'], registers: [registry] })
  const overload = new Counter({ name: 'hg_overload_rejections_total', help: 'Requests refused by load shedding (503)', registers: [registry] })

  /* eslint-disable no-new -- gauges register themselves and read their sources on scrape */
  new Gauge({ name: 'hg_bcrypt_queue_depth', help: 'bcrypt compares waiting for a slot', registers: [registry], collect () { this.set(sources.bcryptQueue()) } })
  new Gauge({ name: 'hg_bcrypt_active', help: 'bcrypt compares running', registers: [registry], collect () { this.set(sources.bcryptActive()) } })
  new Gauge({ name: 'hg_bcrypt_background_queue_depth', help: 'Background bcrypt compares (memo refreshes) waiting for an idle slot', registers: [registry], collect () { this.set(sources.bcryptBackgroundQueue()) } })
  new Gauge({ name: 'hg_verify_memo_entries', help: 'Entries in the verification memo', registers: [registry], collect () { this.set(sources.memoSize()) } })
  new Gauge({
    name: 'hg_db_pool_connections',
    help: 'PostgreSQL pool connections by state',
    labelNames: ['state'],
    registers: [registry],
    collect () {
      const s = sources.dbPool()
      this.set({ state: 'total' }, s.total)
      this.set({ state: 'idle' }, s.idle)
      this.set({ state: 'waiting' }, s.waiting)
      this.set({ state: 'max' }, s.max)
    }
  })
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
    dbQuery: (query, seconds, ok) => dbDuration.child(query, ok ? 'ok' : 'error').observe(seconds),
    upstream (code, seconds) {
      const r = upstreamRecord(statusClass(code))
      r.count.inc()
      r.duration.observe(seconds)
    },
    lastUsedWrites: (kind, count) => lastUsed.inc({ type: kind }, count),
    overloaded: () => overload.inc(),
    async render () {
      return { contentType: registry.contentType, body: await registry.metrics() }
    }
  }
}
