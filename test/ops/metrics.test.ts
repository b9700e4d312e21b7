import parsePrometheusTextFormat from 'parse-prometheus-text-format'
import t from 'tap'
import { request } from '../helpers/http.js'
import { rememberSecret, startStack } from '../helpers/stack.js'

interface Family {
  name: string
  type: string
  metrics: Array<{ labels?: Record<string, string>, value?: string, count?: string, buckets?: Record<string, string> }>
}

async function scrape (opsPort: number): Promise<Family[]> {
  const res = await request(opsPort, '/metrics')
  if (res.statusCode !== 200) throw new Error(`metrics: ${res.statusCode}`)
  if (!/^text\/plain; version=0\.0\.4/.test(String(res.headers['content-type']))) throw new Error('not the Prometheus text format')
  return parsePrometheusTextFormat(res.text) as Family[]
}

function value (families: Family[], name: string, labels: Record<string, string> = {}): number {
  const f = families.find(x => x.name === name)
  if (f === undefined) return 0
  let sum = 0
  for (const m of f.metrics) {
    if (Object.entries(labels).every(([k, v]) => m.labels?.[k] === v)) sum += Number(m.value ?? m.count ?? 0)
  }
  return sum
}

t.test('/metrics counts a mix of good and bad requests, in valid Prometheus exposition', async t => {
  const env = await startStack(t)
  const viewer = await env.mintPat({ role: 'viewer' })
  const { orgId, userId } = { orgId: viewer.orgId, userId: await env.createUser() }
  await env.addMember(orgId, userId, 'owner')
  const key = await env.service.createApiKey({ orgId, createdBy: userId, name: 'k', role: 'viewer' })
  rememberSecret(key.token)
  const before = await scrape(env.opsPort)

  await env.get('/api/scans', viewer.token) // ok, memo miss + bcrypt
  await env.get('/api/scans', viewer.token) // ok, memo hit
  await env.get('/api/scans', key.token) // ok api key
  await env.get('/api/scans') // missing
  await env.get('/api/scans', 'hg_pat_bad') // malformed
  await env.get('/api/scans', 'hg_pat_fff' + viewer.token.slice(10)) // unknown or bad secret
  await env.request('/api/scans', { method: 'POST', headers: { 'x-api-key': viewer.token } }) // forbidden
  await env.get('/api/status') // public

  const after = await scrape(env.opsPort)
  const delta = (name: string, labels: Record<string, string> = {}): number => value(after, name, labels) - value(before, name, labels)
  // The text parser keeps no labels on histogram samples: histogram counts come from the registry itself.
  const histogramCount = async (name: string, labels: Record<string, string> = {}): Promise<number> => {
    const all = await env.sidecar.metrics.registry.getMetricsAsJSON()
    const m = all.find(x => x.name === name)
    return (m?.values ?? []).filter(v => (v as { metricName?: string }).metricName === `${name}_count` && Object.entries(labels).every(([k, l]) => v.labels[k] === l)).reduce((a, v) => a + v.value, 0)
  }
  t.equal(delta('hg_auth_decisions_total', { type: 'pat', result: 'allow', reason: 'ok' }), 2)
  t.equal(delta('hg_auth_decisions_total', { type: 'api_key', result: 'allow', reason: 'ok' }), 1)
  t.equal(delta('hg_auth_decisions_total', { type: 'none', result: 'deny', reason: 'missing' }), 1)
  t.equal(delta('hg_auth_decisions_total', { type: 'none', result: 'deny', reason: 'malformed' }), 1)
  t.equal(delta('hg_auth_decisions_total', { type: 'pat', result: 'deny', reason: 'unknown' }) + delta('hg_auth_decisions_total', { type: 'pat', result: 'deny', reason: 'bad_secret' }), 1)
  t.equal(delta('hg_auth_decisions_total', { type: 'pat', result: 'deny', reason: 'forbidden' }), 1)
  t.equal(delta('hg_auth_decisions_total', { type: 'none', result: 'allow', reason: 'public' }), 1)
  t.equal(await histogramCount('hg_auth_duration_seconds'), 8, 'one auth latency sample per request')
  t.equal(delta('hg_verify_memo_requests_total', { result: 'hit' }), 2, 'second viewer request and the forbidden one')
  t.ok(delta('hg_verify_memo_requests_total', { result: 'miss' }) >= 1)
  t.ok(await histogramCount('hg_bcrypt_duration_seconds') >= 1)
  t.ok(delta('hg_prefix_cache_requests_total') >= 1)
  t.ok(await histogramCount('hg_db_query_duration_seconds', { query: 'hg_pat_states' }) >= 1)
  t.ok(await histogramCount('hg_db_query_duration_seconds', { query: 'hg_api_key_states' }) >= 1)
  t.equal(delta('hg_upstream_responses_total', { status_class: '2xx' }), 4, 'viewer x2, api key, public')
  t.equal(await histogramCount('hg_upstream_duration_seconds'), 4)
  for (const name of ['hg_auth_duration_seconds', 'hg_bcrypt_duration_seconds', 'hg_db_query_duration_seconds', 'hg_upstream_duration_seconds']) {
    t.equal(after.find(f => f.name === name)?.type, 'HISTOGRAM', `${name} parses as a histogram`)
  }
  for (const name of ['hg_bcrypt_queue_depth', 'hg_db_pool_connections', 'process_cpu_user_seconds_total', 'nodejs_eventloop_lag_seconds', 'process_resident_memory_bytes']) {
    t.ok(after.some(f => f.name === name), `${name} exposed`)
  }
  const text = (await request(env.opsPort, '/metrics')).text
  t.notMatch(text, viewer.userId, 'no user id in any label')
  t.notMatch(text, /hg_pat_[0-9a-f]{4}|hg_key_[0-9a-f]{4}/, 'no token or prefix in any label')
  t.notMatch(text, /\/api\/scans/, 'no path in any label')
  for (const f of after.filter(f => f.name.startsWith('hg_') && f.type === 'COUNTER')) t.match(f.name, /_total$/, f.name)
})
