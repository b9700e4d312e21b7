import { Redis } from 'ioredis'
import t from 'tap'
import { createFailureLimiter, createRedisFailureLimiter, type FailureLimiter, type Gate } from '../../src/auth/rate-limit.js'
import { createRedisHealth } from '../../src/store/redis.js'
import { createRedisNamespace, REDIS_URL } from '../helpers/services.js'

// docs/DESIGN.md §2.2: an attempt is counted when it starts and taken back when it proves good.

t.test('in process: counted at the start, per client and per prefix, refunded on success', async t => {
  let now = 0
  const l = createFailureLimiter({ maxFailures: 2, windowSeconds: 10, now: () => now })
  t.same(l.begin('1.1.1.1', 'hg_pat_abc'), { client: 0, prefix: 0 })
  t.same(l.begin('1.1.1.1', 'hg_pat_abc'), { client: 0, prefix: 0 })
  t.equal(l.blocked('1.1.1.1'), 10, 'two attempts under way: the budget is used')
  t.same(l.begin('1.1.1.1', 'hg_pat_abc'), { client: 10, prefix: 10 }, 'the third is refused before any work')
  t.same(l.begin('2.2.2.2', 'hg_pat_abc'), { client: 0, prefix: 10 }, 'another address, the same prefix')
  t.same(l.begin('3.3.3.3', 'hg_pat_def'), { client: 0, prefix: 0 })
  l.refund('3.3.3.3', 'hg_pat_def')
  l.refund('3.3.3.3', 'hg_pat_def')
  t.same(l.begin('3.3.3.3', 'hg_pat_def'), { client: 0, prefix: 0 }, 'a refund never goes below zero')
  now = 4_000
  t.equal(l.blocked('1.1.1.1'), 6, 'seconds left in the window')
  now = 10_000
  t.equal(l.blocked('1.1.1.1'), 0, 'window over')
  l.fail('4.4.4.4')
  l.fail('4.4.4.4')
  t.equal(l.blocked('4.4.4.4'), 10, 'failures with nothing to verify count too')
  const off = createFailureLimiter({ maxFailures: 0, windowSeconds: 1 })
  off.fail('x')
  t.same(off.begin('x', 'p'), { client: 0, prefix: 0 })
  t.equal(off.blocked('x'), 0)
})

async function gate (l: FailureLimiter, client: string, prefix: string): Promise<Gate> {
  return await l.begin(client, prefix)
}

t.test('in Redis: replicas share the counters; single-key commands', async t => {
  const redis = new Redis(REDIS_URL)
  t.teardown(() => redis.disconnect())
  await new Promise(resolve => redis.once('ready', resolve))
  const keyPrefix = createRedisNamespace(t)
  const make = (): FailureLimiter => createRedisFailureLimiter({ maxFailures: 3, windowSeconds: 30, client: redis, health: createRedisHealth(), keyPrefix })
  const a = make()
  const b = make()
  t.same(await gate(a, '10.0.0.1', 'hg_pat_abc'), { client: 0, prefix: 0 })
  t.same(await gate(b, '10.0.0.1', 'hg_pat_abc'), { client: 0, prefix: 0 })
  // Concurrent attempts: the atomic increments let exactly the budget through.
  const gates = await Promise.all([gate(a, '10.0.0.1', 'hg_pat_abc'), gate(b, '10.0.0.1', 'hg_pat_abc'), gate(a, '10.0.0.1', 'hg_pat_abc')])
  t.equal(gates.filter(g => g.client === 0).length, 1, 'the third attempt across both replicas, and no more')
  t.ok(a.blocked('10.0.0.1') > 0, 'known blocked at once, without a round trip')
  const ttl = await redis.pttl(`${keyPrefix}limit:ip:10.0.0.1`)
  t.ok(ttl > 0 && ttl <= 30_000, 'the counter expires with its window')
  t.equal(Number(await redis.get(`${keyPrefix}limit:prefix:hg_pat_abc`)), 5, 'counted per prefix as well')

  a.refund('10.0.0.9', 'hg_pat_zzz')
  await new Promise(resolve => setTimeout(resolve, 50))
  t.equal(await redis.exists(`${keyPrefix}limit:ip:10.0.0.9`), 0, 'a refund of nothing creates no key')
  t.same(await gate(b, '10.0.0.2', 'hg_pat_def'), { client: 0, prefix: 0 })
  b.refund('10.0.0.2', 'hg_pat_def')
  await new Promise(resolve => setTimeout(resolve, 50))
  t.equal(Number(await redis.get(`${keyPrefix}limit:ip:10.0.0.2`)), 0, 'a refund takes the attempt back')
})

t.test('Redis unreachable: counted in process meanwhile', async t => {
  const redis = new Redis({ port: 1, lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0 })
  t.teardown(() => redis.disconnect())
  const l = createRedisFailureLimiter({ maxFailures: 1, windowSeconds: 30, client: redis, health: createRedisHealth(), keyPrefix: 'x:' })
  t.same(await gate(l, '10.0.0.1', 'p'), { client: 0, prefix: 0 })
  t.same(await gate(l, '10.0.0.1', 'p'), { client: 30, prefix: 30 })
  l.fail('10.0.0.2')
  t.equal(l.blocked('10.0.0.2'), 30)
})
