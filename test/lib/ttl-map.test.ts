import t from 'tap'
import { TtlMap } from '../../src/lib/ttl-map.js'

t.test('entries expire at the TTL they were set with', async t => {
  let now = 0
  const m = new TtlMap<string, number>({ maxEntries: 10, now: () => now })
  m.set('a', 1, 1000)
  m.set('b', 2, 0)
  t.equal(m.get('a'), 1)
  t.equal(m.get('b'), undefined, 'ttl 0: not stored')
  t.equal(m.expiresAt('a'), 1000)
  now = 999
  t.equal(m.get('a'), 1, 'a hit does not extend the TTL')
  now = 1000
  t.equal(m.get('a'), undefined)
  t.equal(m.size, 0, 'an expired entry is dropped when met')
})

t.test('bounded: the least recently used entry goes, recency to touchMs', async t => {
  let now = 0
  const m = new TtlMap<string, number>({ maxEntries: 3, now: () => now, touchMs: 1000 })
  m.set('a', 1, 60_000)
  m.set('b', 2, 60_000)
  m.set('c', 3, 60_000)
  now = 500
  m.get('a')
  m.set('d', 4, 60_000)
  t.equal(m.get('a'), undefined, 'a hit within touchMs does not move the entry: a was still the oldest')
  t.equal(m.size, 3)
  now = 2000
  m.get('b')
  m.set('e', 5, 60_000)
  t.equal(m.get('b'), 2, 'b was used: kept')
  t.equal(m.get('c'), undefined, 'c, least recently used, evicted')
  t.same([m.get('d'), m.get('e')], [4, 5])
  m.set('b', 20, 60_000)
  t.equal(m.size, 3, 'setting an existing key replaces it')
  t.equal(m.get('b'), 20)
  t.ok(m.delete('b'))
  m.clear()
  t.equal(m.size, 0)
})

t.test('touchMs 0: every hit moves its entry', async t => {
  const m = new TtlMap<string, number>({ maxEntries: 2, touchMs: 0 })
  m.set('a', 1, 60_000)
  m.set('b', 2, 60_000)
  m.get('a')
  m.set('c', 3, 60_000)
  t.equal(m.get('a'), 1)
  t.equal(m.get('b'), undefined)
  t.throws(() => new TtlMap({ maxEntries: 0 }))
})
