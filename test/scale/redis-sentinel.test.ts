import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import t from 'tap'
import { startRedisSentinel, startRedisServer, skipUnless } from '../helpers/engines.js'
import { request } from '../helpers/http.js'
import { startStack, type Stack } from '../helpers/stack.js'

// DESIGN.md 8: Redis Sentinel through ioredis. A failover must cost no wrong
// pass and no failed valid request (PostgreSQL answers while the cache is
// away), and the sidecar must find the promoted master by itself.

const skip = skipUnless('redis-server', 'redis-sentinel')

async function until (what: string, fn: () => Promise<boolean> | boolean, ms = 30_000): Promise<void> {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (await fn()) return
    await sleep(100)
  }
  throw new Error(`timed out waiting for ${what}`)
}

function countResults (env: Stack): Record<string, number> {
  const counts: Record<string, number> = { hit: 0, miss: 0, error: 0 }
  env.sidecar.cache.onResult(r => { counts[r] = (counts[r] ?? 0) + 1 })
  return counts
}

const readyz = async (env: Stack): Promise<Record<string, unknown>> => (await request(env.opsPort, '/readyz')).json()

t.test('Sentinel: core cases; the master dies mid-load; the sidecar follows the promoted replica', { skip }, async t => {
  const set = await startRedisSentinel(t)
  // Memo off: every request asks the prefix cache, so the cache's part is visible.
  const env = await startStack(t, {
    redisUrl: null,
    config: { redis: { sentinels: set.addresses, sentinelName: set.name }, auth: { memoTtlSeconds: 0, negativeMemoTtlSeconds: 0 } }
  })
  await until('connected through the sentinels', () => env.sidecar.cache.status() === 'ok')
  const counts = countResults(env)

  const valid = await Promise.all(Array.from({ length: 4 }, async () => await env.mintPat()))
  const revokedPat = await env.mintPat()
  const first = valid[0]?.token ?? ''
  const wrong = first.slice(0, -1) + (first.endsWith('0') ? '1' : '0')
  for (const p of valid) t.equal((await env.get('/api/scans', p.token)).statusCode, 200, 'valid PAT')
  t.equal((await env.get('/api/scans', wrong)).statusCode, 401, 'wrong secret')
  t.equal((await env.get('/api/scans', revokedPat.token)).statusCode, 200)
  await env.service.revokePat(revokedPat.id)
  t.equal((await env.get('/api/scans', revokedPat.token)).statusCode, 401, 'revoked')
  t.ok((counts.hit ?? 0) > 0, 'cache hits through the sentinel-named master')
  t.same(await readyz(env), { status: 'ok', postgres: 'ok', redis: 'ok' })

  // A bounded load loop: valid tokens must pass, refused ones must not, whatever Redis does.
  const loop = { stop: false }
  let sent = 0
  let validFailed = 0
  let wrongPass = 0
  const deadline = Date.now() + 90_000
  const load = Promise.all(Array.from({ length: 4 }, async (_, w) => {
    while (!loop.stop && sent < 20_000 && Date.now() < deadline) {
      const i = sent++
      const bad = i % 4 === w % 4 && i % 3 === 0
      const token = bad ? (i % 2 === 0 ? wrong : revokedPat.token) : valid[i % valid.length]?.token ?? ''
      const res = await env.get('/api/scans', token)
      if (bad && res.statusCode !== 401) wrongPass++
      if (!bad && res.statusCode !== 200) validFailed++
    }
  }))

  await until('load running', () => sent > 50)
  const oldMaster = set.master.port
  await set.master.kill()
  await until('a replica promoted', async () => await set.masterPort() !== oldMaster)
  t.equal(await set.masterPort(), set.replica.port, 'the sentinels promoted the replica')
  await until('readiness back to ok', async () => (await readyz(env)).redis === 'ok', 60_000)
  const hitsBefore = counts.hit ?? 0
  await until('cache hits resume', () => (counts.hit ?? 0) > hitsBefore + 20)
  loop.stop = true
  await load

  t.comment(`${sent} requests during the failover; cache ${JSON.stringify(counts)}`)
  t.equal(wrongPass, 0, 'no refused credential passed')
  t.equal(validFailed, 0, 'no valid request failed')
  t.same(await readyz(env), { status: 'ok', postgres: 'ok', redis: 'ok' })
  const promoted = new Redis({ host: '127.0.0.1', port: set.replica.port })
  t.teardown(() => promoted.disconnect())
  t.ok((await promoted.keys(`${env.redisKeyPrefix}*`)).length > 0, 'the cache lives on the promoted master now')
})

t.test('REDIS_URL on a replica: READONLY is counted, readiness says degraded, a warning says why', { skip }, async t => {
  const master = await startRedisServer(t)
  const replica = await startRedisServer(t, ['--replicaof', '127.0.0.1', String(master.port)])
  const env = await startStack(t, { redisUrl: `redis://127.0.0.1:${replica.port}`, config: { auth: { memoTtlSeconds: 0 } } })
  await until('connected', () => env.sidecar.cache.status() === 'ok')
  const pats = await Promise.all(Array.from({ length: 6 }, async () => await env.mintPat()))
  for (const p of pats) t.equal((await env.get('/api/scans', p.token)).statusCode, 200)
  t.same(await readyz(env), { status: 'degraded', postgres: 'ok', redis: 'degraded' })
  const warning = env.logs.records().find(r => r.msg === 'redis failing; PostgreSQL serves the lookups')
  t.equal(warning?.code, 'READONLY')
  t.match(String(warning?.hint), /REDIS_SENTINELS/)
})
