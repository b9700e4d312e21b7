import fc from 'fast-check'
import t from 'tap'
import { createMemo } from '../../src/auth/memo.js'

// Issue 23: each entry's TTL is jittered (+-10 % by default) so that entries
// primed together do not expire together, and the last 20 % of an entry's
// lifetime is its refresh window. Clock and random source are injected.
const base = { maxEntries: 1000, negativeTtlSeconds: 10, negativeMaxEntries: 10 }

t.test('jitter spreads the expiries of entries made at the same moment', async t => {
  let now = 0
  let next = 0
  // 20 entries made at 0 s, drawing r = 0, 0.05, ..., 0.95.
  const memo = createMemo({ ...base, ttlSeconds: 100, now: () => now, random: () => (next++ % 20) / 20 })
  for (let i = 0; i < 20; i++) memo.set(`k${i}`, { id: String(i), hash: 'h' })
  const alive = (): number[] => Array.from({ length: 20 }, (_, i) => i).filter(i => memo.get(`k${i}`) !== undefined)
  const from = (first: number): number[] => Array.from({ length: 20 - first }, (_, i) => first + i)

  // TTL = 100 s x (1 + 0.1 x (2r - 1)): entry i expires at 90 + i s.
  now = 89_500
  t.same(alive(), from(0), 'none expires before 90 % of the TTL')
  now = 95_500
  t.same(alive(), from(6), 'at 95.5 s: the six that drew lowest have expired')
  now = 100_500
  t.same(alive(), from(11), 'at 100.5 s: about half')
  now = 108_500
  t.same(alive(), [19])
  now = 109_500
  t.same(alive(), [], 'the expiries spread over 19 s instead of one instant')
})

t.test('every TTL lies within +-10 %, and its refresh window is its last 20 %', async t => {
  fc.assert(fc.property(fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), fc.integer({ min: 1, max: 86_400 }), (r, ttlSeconds) => {
    let now = 1_000_000
    const memo = createMemo({ ...base, ttlSeconds, now: () => now, random: () => r })
    memo.set('k', { id: '1', hash: 'h' })
    const hit = memo.get('k')
    if (hit === undefined) return false
    const ttl = ttlSeconds * 1000 * (1 + 0.1 * (2 * r - 1))
    if (Math.abs(hit.refreshAt - (1_000_000 + 0.8 * ttl)) > 1e-6) return false
    if (ttl < ttlSeconds * 900 - 1e-6 || ttl > ttlSeconds * 1100 + 1e-6) return false
    now = Math.floor(hit.refreshAt) - 1
    if (memo.refreshDue(hit)) return false
    now = Math.ceil(hit.refreshAt)
    return memo.refreshDue(hit) && memo.get('k') === hit
  }), { numRuns: 300 })
  t.pass('300 random draws and TTLs')
})

t.test('jitter and the refresh share are options', async t => {
  let now = 0
  const exact = createMemo({ ...base, ttlSeconds: 10, jitter: 0, refreshAhead: 0.5, now: () => now, random: () => 0.99 })
  exact.set('k', { id: '1', hash: 'h' })
  const hit = exact.get('k')
  t.equal(hit?.refreshAt, 5000)
  now = 9999
  t.ok(exact.get('k'))
  now = 10_000
  t.equal(exact.get('k'), undefined)
  t.throws(() => createMemo({ ...base, ttlSeconds: 10, jitter: 1 }), /jitter/)
  t.throws(() => createMemo({ ...base, ttlSeconds: 10, refreshAhead: 1 }), /refreshAhead/)
})

t.test('a renewed entry starts a new jittered lifetime', async t => {
  let now = 0
  let r = 0
  const memo = createMemo({ ...base, ttlSeconds: 100, now: () => now, random: () => r })
  memo.set('k', { id: '1', hash: 'h' })
  now = 80_000
  r = 1
  memo.set('k', { id: '1', hash: 'h' })
  now = 189_999
  t.ok(memo.get('k'), 'renewed at 80 s with r = 1: lives until 190 s')
  now = 190_000
  t.equal(memo.get('k'), undefined)
})
