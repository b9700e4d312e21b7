import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'

/** DESIGN.md 5: `hg_` prefix, base units, `_total` counters; no label ever holds a token, a path or a user id. */
export interface Metrics {
  registry: Registry
  authDecision(type: string, result: 'allow' | 'deny', reason: string, seconds: number): void
  bcrypt(seconds: number): void
  bcryptRejected(): void
  prefixCache(result: string): void
  memo(result: string): void
  dbQuery(query: string, seconds: number, ok: boolean): void
  upstream(statusCode: number, seconds: number): void
  lastUsedWrites(kind: string, count: number): void
  overloaded(): void
  render(): Promise<{ contentType: string, body: string }>
}

export interface MetricsSources {
  bcryptQueue: () => number
  bcryptActive: () => number
  dbPool: () => { total: number, idle: number, waiting: number, max: number }
  memoSize: () => number
}

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
const BCRYPT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]

export function createMetrics (sources: MetricsSources): Metrics {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })

  const decisions = new Counter({ name: 'hg_auth_decisions_total', help: 'Authentication decisions by credential type, result and reason', labelNames: ['type', 'result', 'reason'], registers: [registry] })
  const authDuration = new Histogram({ name: 'hg_auth_duration_seconds', help: 'Time the auth pipeline took per request', labelNames: ['type', 'result'], buckets: LATENCY_BUCKETS, registers: [registry] })
  const bcryptDuration = new Histogram({ name: 'hg_bcrypt_duration_seconds', help: 'bcrypt compare time', buckets: BCRYPT_BUCKETS, registers: [registry] })
  const bcryptRejections = new Counter({ name: 'hg_bcrypt_rejections_total', help: 'bcrypt work refused because the queue was full (503)', registers: [registry] })
  const cache = new Counter({ name: 'hg_prefix_cache_requests_total', help: 'Prefix cache lookups by result', labelNames: ['result'], registers: [registry] })
  const memo = new Counter({ name: 'hg_verify_memo_requests_total', help: 'Verification memo lookups by result', labelNames: ['result'], registers: [registry] })
  const dbDuration = new Histogram({ name: 'hg_db_query_duration_seconds', help: 'PostgreSQL query time by statement', labelNames: ['query', 'result'], buckets: LATENCY_BUCKETS, registers: [registry] })
  const upstreamResponses = new Counter({ name: 'hg_upstream_responses_total', help: 'Responses from the upstream by status class', labelNames: ['status_class'], registers: [registry] })
  const upstreamDuration = new Histogram({ name: 'hg_upstream_duration_seconds', help: 'Upstream time to response headers', labelNames: ['status_class'], buckets: LATENCY_BUCKETS, registers: [registry] })
  const lastUsed = new Counter({ name: 'hg_last_used_writes_total', help: 'Credentials whose last_used_at was written', labelNames: ['type'], registers: [registry] })
  const overload = new Counter({ name: 'hg_overload_rejections_total', help: 'Requests refused by load shedding (503)', registers: [registry] })

  /* eslint-disable no-new -- gauges register themselves and read their sources on scrape */
  new Gauge({ name: 'hg_bcrypt_queue_depth', help: 'bcrypt compares waiting for a slot', registers: [registry], collect () { this.set(sources.bcryptQueue()) } })
  new Gauge({ name: 'hg_bcrypt_active', help: 'bcrypt compares running', registers: [registry], collect () { this.set(sources.bcryptActive()) } })
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

  const statusClass = (code: number): string => code >= 100 && code < 600 ? `${Math.floor(code / 100)}xx` : 'other'

  // Label children looked up once per label set: the hot path then only increments.
  function cached<T> (make: (...labels: string[]) => T): (...labels: string[]) => T {
    const children = new Map<string, T>()
    return (...labels) => {
      const key = labels.join('\u0000')
      let c = children.get(key)
      if (c === undefined) {
        c = make(...labels)
        children.set(key, c)
      }
      return c
    }
  }
  const decisionChild = cached((type = '', result = '', reason = '') => decisions.labels({ type, result, reason }))
  const authDurationChild = cached((type = '', result = '') => authDuration.labels({ type, result }))
  const memoChild = cached((result = '') => memo.labels({ result }))
  const cacheChild = cached((result = '') => cache.labels({ result }))
  const dbChild = cached((query = '', result = '') => dbDuration.labels({ query, result }))
  const upstreamChild = cached((c = '') => upstreamResponses.labels({ status_class: c }))
  const upstreamDurationChild = cached((c = '') => upstreamDuration.labels({ status_class: c }))

  return {
    registry,
    authDecision (type, result, reason, seconds) {
      decisionChild(type, result, reason).inc()
      authDurationChild(type, result).observe(seconds)
    },
    bcrypt: seconds => bcryptDuration.observe(seconds),
    bcryptRejected: () => bcryptRejections.inc(),
    prefixCache: result => cacheChild(result).inc(),
    memo: result => memoChild(result).inc(),
    dbQuery: (query, seconds, ok) => dbChild(query, ok ? 'ok' : 'error').observe(seconds),
    upstream (code, seconds) {
      const c = statusClass(code)
      upstreamChild(c).inc()
      upstreamDurationChild(c).observe(seconds)
    },
    lastUsedWrites: (kind, count) => lastUsed.inc({ type: kind }, count),
    overloaded: () => overload.inc(),
    async render () {
      return { contentType: registry.contentType, body: await registry.metrics() }
    }
  }
}
