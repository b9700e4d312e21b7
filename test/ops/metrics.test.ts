import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import parsePrometheusTextFormat from 'parse-prometheus-text-format'
import t from 'tap'
import { request } from '../helpers/http.js'
import { checkMetrics, NO_PROMTOOL } from '../helpers/promtool.js'
import { rememberSecret, ROOT, startStack } from '../helpers/stack.js'

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
  t.ok(await histogramCount('hg_db_query_duration_seconds', { query: 'pat_states' }) >= 1)
  t.ok(await histogramCount('hg_db_query_duration_seconds', { query: 'api_key_states' }) >= 1)
  t.equal(delta('hg_upstream_responses_total', { status_class: '2xx' }), 4, 'viewer x2, api key, public')
  t.equal(await histogramCount('hg_upstream_duration_seconds'), 4)
  for (const name of ['hg_auth_duration_seconds', 'hg_bcrypt_duration_seconds', 'hg_db_query_duration_seconds', 'hg_upstream_duration_seconds']) {
    t.equal(after.find(f => f.name === name)?.type, 'HISTOGRAM', `${name} parses as a histogram`)
  }
  for (const name of ['hg_bcrypt_queue_depth', 'hg_db_pool_connections', 'hg_db_pool_idle_connections', 'hg_db_pool_waiting_clients', 'hg_db_pool_max_connections', 'hg_build_info', 'hg_ready', 'process_cpu_user_seconds_total', 'nodejs_eventloop_lag_seconds', 'process_resident_memory_bytes']) {
    t.ok(after.some(f => f.name === name), `${name} exposed`)
  }
  const text = (await request(env.opsPort, '/metrics')).text
  t.notMatch(text, viewer.userId, 'no user id in any label')
  t.notMatch(text, /hg_pat_[0-9a-f]{4}|hg_key_[0-9a-f]{4}/, 'no token or prefix in any label')
  t.notMatch(text, /\/api\/scans/, 'no path in any label')
  for (const f of after.filter(f => f.name.startsWith('hg_') && f.type === 'COUNTER')) t.match(f.name, /_total$/, f.name)
})

t.test('a fresh sidecar: promtool-clean exposition, alert series at 0, separate pool gauges, build and readiness info', async t => {
  const env = await startStack(t)
  const text = (await request(env.opsPort, '/metrics')).text
  const families = parsePrometheusTextFormat(text) as Family[]
  const names = new Set(families.map(f => f.name))

  const lint = await checkMetrics(text)
  if (lint === null) t.comment(NO_PROMTOOL)
  else t.same({ code: lint.code, out: (lint.stdout + lint.stderr).trim() }, { code: 0, out: '' }, 'promtool check metrics finds nothing')
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
    t.notOk(names.has(name), `${name} (a gauge named like a counter) is not exported`)
  }
  t.ok(names.has('nodejs_active_handles'), 'the per-type gauge stays')
  for (const f of families) {
    if (f.type !== 'COUNTER') t.notMatch(f.name, /_total$/, `${f.name} is a ${f.type}, not named _total`)
  }

  const series = (name: string, labels: Record<string, string>): boolean => families.some(f => f.name === name && f.metrics.some(m => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v)))
  // Before any request: the series alert expressions divide or rate over already exist, at 0.
  for (const labels of [{ type: 'pat', result: 'deny', reason: 'bad_secret' }, { type: 'pat', result: 'deny', reason: 'unknown' }, { type: 'none', result: 'deny', reason: 'missing' }, { type: 'pat', result: 'allow', reason: 'ok' }, { type: 'api_key', result: 'deny', reason: 'unavailable' }]) {
    t.ok(series('hg_auth_decisions_total', labels), `hg_auth_decisions_total${JSON.stringify(labels)} exported before the first request`)
    t.equal(value(families, 'hg_auth_decisions_total', labels), 0)
  }
  for (const c of ['2xx', '4xx', '5xx']) t.ok(series('hg_upstream_responses_total', { status_class: c }), `upstream ${c} at 0`)
  for (const e of ['refused', 'timeout']) t.ok(series('hg_upstream_errors_total', { error: e }), `upstream error ${e} at 0`)
  t.ok(names.has('hg_bcrypt_rejections_total') && names.has('hg_overload_rejections_total'))
  for (const r of ['hit', 'miss']) {
    t.ok(series('hg_verify_memo_requests_total', { result: r }), `memo ${r} at 0`)
    t.ok(series('hg_prefix_cache_requests_total', { result: r }), `prefix cache ${r} at 0`)
  }
  t.match(text, /hg_db_query_duration_seconds_count\{query="pat_states",result="error"\} 0/, 'query errors at 0')
  t.notMatch(text, /query="hg_/, 'query label values do not repeat hg_')

  t.equal(value(families, 'hg_db_pool_max_connections'), env.config.database.poolSize, 'the pool limit is a gauge of its own')
  for (const name of ['hg_db_pool_connections', 'hg_db_pool_idle_connections', 'hg_db_pool_waiting_clients']) {
    t.same(families.find(f => f.name === name)?.metrics.map(m => m.labels ?? {}), [{}], `${name}: one series, no state label`)
  }
  t.ok(value(families, 'hg_db_pool_connections') >= value(families, 'hg_db_pool_idle_connections'))
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }
  t.same(families.find(f => f.name === 'hg_build_info')?.metrics, [{ labels: { version: pkg.version, node: process.version }, value: '1' }])
  t.equal(value(families, 'hg_bcrypt_concurrency'), env.sidecar.bcrypt.concurrency)
  t.equal(value(families, 'hg_ready'), 1, 'ready')
  t.equal(value(families, 'hg_dependency_up', { dependency: 'postgres' }), 1)
  t.equal(value(families, 'hg_dependency_up', { dependency: 'redis' }), 1)
  t.notOk(series('hg_dependency_up', { dependency: 'upstream' }), 'no upstream series while its check is off')
})

t.test('hg_ready and hg_dependency_up follow the readiness check; a refused upstream counts as an upstream error', async t => {
  const env = await startStack(t, { config: { upstream: { readinessCheck: true } } })
  const pat = await env.mintPat()
  let families = parsePrometheusTextFormat((await request(env.opsPort, '/metrics')).text) as Family[]
  t.equal(value(families, 'hg_ready'), 1)
  t.equal(value(families, 'hg_dependency_up', { dependency: 'upstream' }), 1)

  await env.upstream.close()
  t.equal((await env.get('/api/scans', pat.token)).statusCode, 502)
  // The upstream check keeps its answer for a second: scrape until it has looked again.
  for (let i = 0; i < 50; i++) {
    families = parsePrometheusTextFormat((await request(env.opsPort, '/metrics')).text) as Family[]
    if (value(families, 'hg_ready') === 0) break
    await sleep(100)
  }
  t.equal(value(families, 'hg_ready'), 0, 'not ready with the upstream down')
  t.equal(value(families, 'hg_dependency_up', { dependency: 'upstream' }), 0)
  t.equal(value(families, 'hg_dependency_up', { dependency: 'postgres' }), 1)
  t.equal(value(families, 'hg_upstream_errors_total', { error: 'refused' }), 1)
  t.equal(value(families, 'hg_upstream_responses_total', { status_class: '5xx' }), 1, 'the 502 is also a 5xx response')
})
