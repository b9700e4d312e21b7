import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { request } from '../helpers/http.js'
import { createTestDatabase, REDIS_URL } from '../helpers/services.js'
import { startStack } from '../helpers/stack.js'
import { startTcpProxy } from '../helpers/tcp-proxy.js'

const redis = new URL(REDIS_URL)
async function until (what: string, fn: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (await fn()) return
    await sleep(50)
  }
  throw new Error(`timed out waiting for ${what}`)
}

t.test('Redis on a dead port from the start: valid tokens pass through PostgreSQL', async t => {
  const env = await startStack(t, { redisUrl: 'redis://127.0.0.1:1' })
  const pat = await env.mintPat()
  t.equal((await env.get('/api/scans', pat.token)).statusCode, 200, 'cold: bcrypt against PostgreSQL candidates')
  t.equal((await env.get('/api/scans', pat.token)).statusCode, 200, 'memoized')
  const ready = await request(env.opsPort, '/readyz')
  t.equal(ready.statusCode, 200)
  t.same(ready.json(), { status: 'degraded', postgres: 'ok', redis: 'degraded' })
  const warning = env.logs.records().find(r => r.msg === 'redis failing; PostgreSQL serves the lookups')
  t.equal(warning?.code, 'ECONNREFUSED', 'a warning with the error code')
  t.match((warning?.err as { message?: string } | undefined)?.message ?? '', /ECONNREFUSED/)
  t.notOk(env.logs.lines.some(l => l.includes('[object Object]')), 'the error itself is logged, not [object Object]')
})

t.test('Redis lost mid-run and back: requests keep passing, the cache reconnects by itself', async t => {
  const relay = await startTcpProxy(t, redis.hostname, Number(redis.port || 6379))
  const env = await startStack(t, { redisUrl: relay.url('redis') })
  await until('redis ready', async () => env.sidecar.cache.status() === 'ok')
  const pat = await env.mintPat()
  t.equal((await env.get('/api/scans', pat.token)).statusCode, 200)

  relay.cut()
  await until('redis seen down', async () => env.sidecar.cache.status() === 'degraded')
  const fresh = await env.mintPat()
  t.equal((await env.get('/api/scans', fresh.token)).statusCode, 200, 'new token, Redis down')
  t.equal((await env.get('/api/scans', pat.token)).statusCode, 200, 'old token, Redis down')

  relay.restore()
  await until('redis reconnected', async () => env.sidecar.cache.status() === 'ok')
  const third = await env.mintPat()
  let hits = 0
  env.sidecar.cache.onResult(r => { if (r !== 'error') hits++ })
  t.equal((await env.get('/api/scans', third.token)).statusCode, 200)
  t.ok(hits > 0, 'the cache is used again')
})

t.test('PostgreSQL unreachable: 503 with Retry-After, never a pass; normal service once back', async t => {
  const dbUrl = await createTestDatabase(t)
  const u = new URL(dbUrl)
  const relay = await startTcpProxy(t, u.hostname, Number(u.port || 5432))
  const viaRelay = new URL(dbUrl)
  viaRelay.host = `127.0.0.1:${relay.port}`
  const env = await startStack(t, { databaseUrl: viaRelay.toString(), config: { database: { connectTimeoutMs: 500, queryTimeoutMs: 1000 } } })
  const pat = await env.mintPat()
  t.equal((await env.get('/api/scans', pat.token)).statusCode, 200)

  relay.cut()
  for (const token of [pat.token, (await env.mintPat().catch(() => null))?.token ?? pat.token.slice(0, -1) + '0']) {
    const res = await env.get('/api/scans', token)
    t.equal(res.statusCode, 503)
    t.same(res.json(), { error: 'unavailable', message: 'The credential store is unavailable; retry shortly' })
    t.ok(Number(res.headers['retry-after']) >= 1)
  }
  const ready = await request(env.opsPort, '/readyz')
  t.equal(ready.statusCode, 503)
  t.equal(ready.json().postgres, 'down')
  const upstreamSawBefore = env.upstream.requests.length

  relay.restore()
  await until('service back', async () => (await env.get('/api/scans', pat.token)).statusCode === 200)
  t.equal(env.upstream.requests.length, upstreamSawBefore + 1, 'nothing passed while PostgreSQL was down')
  // Readiness reuses its last answer for a second (src/ops/health.ts).
  await until('ready again', async () => (await request(env.opsPort, '/readyz')).statusCode === 200)
})
