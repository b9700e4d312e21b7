import bcrypt from 'bcrypt'
import t from 'tap'
import { createBcryptPool } from '../../src/auth/bcrypt-pool.js'
import { createLastUsedRecorder } from '../../src/auth/last-used.js'
import { createMemo } from '../../src/auth/memo.js'
import { createFailureLimiter } from '../../src/auth/rate-limit.js'
import { createBatcher } from '../../src/store/batcher.js'

t.test('bcrypt pool: bounded concurrency, a short queue, then an immediate 503 error', async t => {
  const hash = await bcrypt.hash('x', 10)
  const pool = createBcryptPool({ concurrency: 1, queueSize: 1 })
  const a = pool.compare('x', hash)
  const b = pool.compare('y', hash)
  t.equal(pool.active, 1)
  t.equal(pool.queued, 1)
  let firstDone = false
  void a.then(() => { firstDone = true })
  await t.rejects(pool.compare('z', hash), { code: 'HG_ERR_AUTH_BUSY', statusCode: 503 })
  t.notOk(firstDone, 'refused without waiting for bcrypt')
  t.same(await Promise.all([a, b]), [true, false])
  t.equal(pool.compares, 2)
  t.equal(pool.rejections, 1)
  t.equal(pool.active, 0)
})

t.test('bcrypt pool: compares for requesters that have gone are dropped, not run', async t => {
  const hash = await bcrypt.hash('x', 4)
  const pool = createBcryptPool({ concurrency: 1, queueSize: 2 })
  const live = { destroyed: false }
  const leaving = { destroyed: false }
  await t.rejects(pool.compare('x', hash, { destroyed: true }), { code: 'HG_ERR_CLIENT_GONE' }, 'gone before it started')
  const a = pool.compare('x', hash, live)
  const b = pool.compare('x', hash, leaving)
  const c = pool.compare('x', hash, live)
  t.equal(pool.queued, 2)
  leaving.destroyed = true
  // A full queue sweeps out the gone before refusing.
  const d = pool.compare('y', hash, live)
  await t.rejects(b, { code: 'HG_ERR_CLIENT_GONE' })
  t.equal(pool.queued, 2, 'the leaver made room')
  t.same(await Promise.all([a, c, d]), [true, true, false])
  t.equal(pool.compares, 3)
  t.equal(pool.abandoned, 2)
  t.equal(pool.rejections, 0)
  t.equal(pool.active, 0)

  // Gone while queued, with the queue not full: skipped when its turn comes.
  const e = pool.compare('x', hash, live)
  const leavingToo = { destroyed: false }
  const f = pool.compare('x', hash, leavingToo)
  const g = pool.compare('x', hash, live)
  leavingToo.destroyed = true
  t.same(await Promise.allSettled([e, f, g]).then(r => r.map(x => x.status)), ['fulfilled', 'rejected', 'fulfilled'])
  t.equal(pool.compares, 5)
  t.equal(pool.active, 0)
})

t.test('memo: TTL, bound, negative entries, per-process keys', async t => {
  let now = 0
  const memo = createMemo({ ttlSeconds: 10, maxEntries: 2, negativeTtlSeconds: 1, negativeMaxEntries: 2, now: () => now, random: () => 0.5 })
  const k1 = memo.key('hg_pat_a')
  t.not(k1, createMemo({ ttlSeconds: 1, maxEntries: 1, negativeTtlSeconds: 1, negativeMaxEntries: 1 }).key('hg_pat_a'), 'keyed per process')
  t.notMatch(k1, /hg_pat/)
  memo.set(k1, { id: '1', hash: 'h1' })
  memo.set('k2', { id: '2', hash: 'h2' })
  memo.set('k3', { id: '3', hash: 'h3' })
  t.equal(memo.size, 2, 'bounded')
  t.equal(memo.get(k1), undefined, 'oldest evicted')
  now = 10_001
  t.equal(memo.get('k3'), undefined, 'expired')
  memo.setNegative('bad')
  t.ok(memo.isNegative('bad'))
  now += 1001
  t.notOk(memo.isNegative('bad'))
  const lru = createMemo({ ttlSeconds: 10, maxEntries: 2, negativeTtlSeconds: 1, negativeMaxEntries: 1, now: () => now, random: () => 0.5 })
  lru.set('a', { id: 'a', hash: 'h' })
  lru.set('b', { id: 'b', hash: 'h' })
  now += 1000
  t.ok(lru.get('a'), 'a used (recency counts to the second)')
  lru.set('c', { id: 'c', hash: 'h' })
  t.ok(lru.get('a'), 'the recently used entry survives')
  t.equal(lru.get('b'), undefined, 'the least recently used is evicted')
  const off = createMemo({ ttlSeconds: 0, maxEntries: 10, negativeTtlSeconds: 1, negativeMaxEntries: 1 })
  off.set('a', { id: '1', hash: 'h' })
  t.equal(off.enabled, false)
  t.equal(off.get('a'), undefined, 'TTL 0 disables')
})

t.test('batcher: one fetch per event-loop turn, only with keys that arrived before it was sent', async t => {
  const calls: string[][] = []
  const b = createBatcher<string, string>(async keys => {
    calls.push(keys)
    return new Map(keys.map(k => [k, k.toUpperCase()]))
  })
  const first = await Promise.all([b.load('a'), b.load('b'), b.load('a')])
  t.same(first, ['A', 'B', 'A'])
  t.same(calls, [['a', 'b']], 'coalesced and de-duplicated')
  const late = b.load('c')
  t.same(await late, 'C')
  t.same(calls, [['a', 'b'], ['c']], 'a later caller gets a new query')
  t.equal(await b.load('missing-key').then(v => v ?? 'none'), 'MISSING-KEY')
  const failing = createBatcher<string, string>(async () => { throw new Error('down') })
  await t.rejects(Promise.all([failing.load('x'), failing.load('y')]), /down/)
})

t.test('batcher: with maxInFlight, callers wait for the next batch instead of adding queries', async t => {
  const calls: string[][] = []
  const gates: Array<() => void> = []
  const b = createBatcher<string, string>(keys => {
    calls.push(keys)
    return new Promise(resolve => gates.push(() => resolve(new Map(keys.map(k => [k, k.toUpperCase()])))))
  }, { maxInFlight: 1 })
  const first = b.load('a')
  await new Promise(resolve => setImmediate(resolve))
  t.same(calls, [['a']], 'the first caller is sent on the next turn')
  t.equal(b.inFlight, 1)
  const later = [b.load('b'), b.load('a'), b.load('c')]
  await new Promise(resolve => setImmediate(resolve))
  await new Promise(resolve => setImmediate(resolve))
  t.same(calls, [['a']], 'nothing more is sent while one query is out')
  gates.shift()?.()
  t.equal(await first, 'A')
  await new Promise(resolve => setImmediate(resolve))
  t.same(calls, [['a'], ['b', 'a', 'c']], 'the waiting callers share the next query; "a" is read again, after it was asked for')
  gates.shift()?.()
  t.same(await Promise.all(later), ['B', 'A', 'C'])
  t.equal(b.batches, 2)
  t.equal(b.keys, 4)
  t.equal(b.inFlight, 0)

  // A backlog bigger than one batch still goes out one query at a time.
  const sizes: string[][] = []
  const release: Array<() => void> = []
  const split = createBatcher<string, string>(keys => {
    sizes.push(keys)
    return new Promise(resolve => release.push(() => resolve(new Map(keys.map(k => [k, k])))))
  }, { maxBatch: 2, maxInFlight: 1 })
  const backlog = ['p', 'q', 'r', 's', 't'].map(k => split.load(k))
  for (let round = 1; round <= 3; round++) {
    await new Promise(resolve => setImmediate(resolve))
    t.equal(split.inFlight, 1, `round ${round}: one query out`)
    release.shift()?.()
    await new Promise(resolve => setImmediate(resolve))
  }
  t.same(await Promise.all(backlog), ['p', 'q', 'r', 's', 't'])
  t.same(sizes, [['p', 'q'], ['r', 's'], ['t']])

  const throwing = createBatcher<string, string>(() => { throw new Error('sync') }, { maxInFlight: 1 })
  await t.rejects(throwing.load('x'), /sync/, 'a fetch that throws rejects its callers')
  t.equal(throwing.inFlight, 0, 'and frees its slot')
  const failing = createBatcher<string, string>(async () => { throw new Error('down') }, { maxInFlight: 1 })
  await t.rejects(failing.load('x'), /down/)
  t.equal(await Promise.race([failing.load('y').catch(() => 'rejected'), new Promise(resolve => setTimeout(() => resolve('stuck'), 1000))]), 'rejected', 'a failed query frees its slot')
})

t.test('last-used recorder: once per interval per credential, batched, flushed on close', async t => {
  let now = 0
  const writes: Array<[string, string[]]> = []
  const r = createLastUsedRecorder({ flushIntervalMs: 3_600_000, minIntervalMs: 60_000, now: () => now, write: async (kind, ids) => { writes.push([kind, ids]) } })
  for (let i = 0; i < 100; i++) { r.record('pat', 'a'); r.record('pat', 'b'); r.record('api_key', 'k') }
  t.equal(r.pending, 3)
  await r.flush()
  t.same(writes, [['pat', ['a', 'b']], ['api_key', ['k']]])
  r.record('pat', 'a')
  await r.flush()
  t.equal(writes.length, 2, 'within the minute: no second write')
  now = 60_001
  r.record('pat', 'a')
  await r.close()
  t.same(writes.at(-1), ['pat', ['a']], 'after the minute, written again; close() flushes')
})

t.test('failure limiter: counts per client in a window', async t => {
  let now = 0
  const l = createFailureLimiter({ maxFailures: 2, windowSeconds: 10, now: () => now })
  l.fail('1.1.1.1')
  t.equal(l.blocked('1.1.1.1'), 0)
  l.fail('1.1.1.1')
  t.equal(l.blocked('1.1.1.1'), 10)
  t.equal(l.blocked('2.2.2.2'), 0, 'per address')
  now = 10_000
  t.equal(l.blocked('1.1.1.1'), 0, 'window over')
  const off = createFailureLimiter({ maxFailures: 0, windowSeconds: 1 })
  off.fail('x')
  t.equal(off.blocked('x'), 0)
})
