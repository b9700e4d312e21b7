import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import t from 'tap'
import { startRedisCluster, skipUnless } from '../helpers/engines.js'
import { request } from '../helpers/http.js'
import { startStack, type Stack } from '../helpers/stack.js'

// DESIGN.md 8: Redis Cluster through ioredis Cluster. The prefix cache sends
// single-key commands only, so keys spread over every master's slots.

const skip = skipUnless('redis-server', 'redis-cli')

async function until (what: string, fn: () => Promise<boolean> | boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (await fn()) return
    await sleep(50)
  }
  throw new Error(`timed out waiting for ${what}`)
}

function countResults (env: Stack): Record<string, number> {
  const counts: Record<string, number> = { hit: 0, miss: 0, error: 0 }
  env.sidecar.cache.onResult(r => { counts[r] = (counts[r] ?? 0) + 1 })
  return counts
}

t.test('core authentication through a 3-master Redis Cluster', { skip }, async t => {
  const cluster = await startRedisCluster(t)
  // The failed-auth limiter on too: its counters live in the cluster (one-key scripts).
  const env = await startStack(t, { redisUrl: null, config: { redis: { clusterNodes: cluster.addresses }, auth: { memoTtlSeconds: 0, rateLimit: { maxFailures: 1000, windowSeconds: 60 } } } })
  await until('cluster ready', () => env.sidecar.cache.status() === 'ok')
  const counts = countResults(env)
  const pats = await Promise.all(Array.from({ length: 9 }, async () => await env.mintPat()))
  for (const p of pats) {
    t.equal((await env.get('/api/scans', p.token)).statusCode, 200, 'valid PAT (candidates from PostgreSQL, cached)')
    t.equal((await env.get('/api/scans', p.token)).statusCode, 200, 'valid PAT (candidates from the cluster)')
  }
  const wrong = (pats[0]?.token ?? '').slice(0, -1) + ((pats[0]?.token ?? '').endsWith('0') ? '1' : '0')
  t.equal((await env.get('/api/scans', wrong)).statusCode, 401, 'wrong secret')
  const victim = pats[1]
  if (victim === undefined) throw new Error('no token')
  const del = await env.request(`/api/personal-access-tokens/${victim.id}`, { method: 'DELETE', headers: { 'x-api-key': victim.token } })
  t.equal(del.statusCode, 204)
  t.equal((await env.get('/api/scans', victim.token)).statusCode, 401, 'revoked')
  t.ok(counts.hit !== undefined && counts.hit >= pats.length, `cache hits (${JSON.stringify(counts)})`)
  t.equal(counts.error, 0, 'no failed cache command')

  const keysPerNode = await Promise.all(cluster.nodes.map(async n => {
    const r = new Redis({ host: '127.0.0.1', port: n.port })
    try {
      return await r.keys(`${env.redisKeyPrefix}*`)
    } finally {
      r.disconnect()
    }
  }))
  const perNode = keysPerNode.map(k => k.length)
  t.ok(perNode.filter(k => k > 0).length >= 2, `keys on several masters (${perNode.join(', ')})`)
  const all = keysPerNode.flat()
  t.ok(all.includes(`${env.redisKeyPrefix}limit:ip:127.0.0.1`), 'the per-address failure counter lives in the cluster')
  t.ok(all.some(k => k.startsWith(`${env.redisKeyPrefix}limit:prefix:hg_pat_`)), 'so do the per-prefix ones')
  const ready = await request(env.opsPort, '/readyz')
  t.same(ready.json(), { status: 'ok', postgres: 'ok', redis: 'ok' })
  t.same(env.logs.records().filter(r => r.msg === 'redis failing; PostgreSQL serves the lookups' && Number(r.failures) > 0), [], 'no warning about failed commands')
})

t.test('REDIS_URL on one cluster node: MOVED makes readiness degraded, and a warning says what to set', { skip }, async t => {
  const cluster = await startRedisCluster(t)
  const node = cluster.nodes[0]
  if (node === undefined) throw new Error('no node')
  const env = await startStack(t, { redisUrl: `redis://127.0.0.1:${node.port}`, config: { auth: { memoTtlSeconds: 0 } } })
  await until('connected', () => env.sidecar.cache.status() === 'ok')
  const pats = await Promise.all(Array.from({ length: 12 }, async () => await env.mintPat()))
  for (const p of pats) t.equal((await env.get('/api/scans', p.token)).statusCode, 200, 'PostgreSQL answers what the cache cannot')

  const ready = await request(env.opsPort, '/readyz')
  t.equal(ready.statusCode, 200)
  t.same(ready.json(), { status: 'degraded', postgres: 'ok', redis: 'degraded' })
  const warning = env.logs.records().find(r => r.msg === 'redis failing; PostgreSQL serves the lookups')
  t.equal(warning?.code, 'MOVED')
  t.match(String(warning?.hint), /REDIS_CLUSTER_NODES/)
  t.match((warning?.err as { message?: string } | undefined)?.message ?? '', /^MOVED \d+ /, 'the error itself, not [object Object]')
  t.notOk(env.logs.lines.some(l => l.includes('[object Object]')))
})
