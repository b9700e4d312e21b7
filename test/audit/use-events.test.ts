import t from 'tap'
import type { CredentialRef, NewEvent } from '../../src/audit/events.js'
import { createUseEventRecorder, type UseEventOptions } from '../../src/audit/use-events.js'

const pat = (id: string): CredentialRef => ({ type: 'pat', id, prefix: 'hg_pat_abc', orgId: 'o', userId: 'u' })

function recorder (over: Partial<UseEventOptions> = {}): { rec: ReturnType<typeof createUseEventRecorder>, written: NewEvent[][], clock: { now: number }, dropped: { n: number } } {
  const written: NewEvent[][] = []
  const clock = { now: 1_000_000 }
  const dropped = { n: 0 }
  const rec = createUseEventRecorder({
    flushIntervalMs: 3_600_000,
    minIntervalMs: 60_000,
    maxPending: 100,
    write: async events => { written.push(events) },
    onDropped: n => { dropped.n += n },
    now: () => clock.now,
    ...over
  })
  t.teardown(() => rec.close())
  return { rec, written, clock, dropped }
}

t.test('one event per credential and kind per interval; the first request of a window is the one kept', async t => {
  const { rec, written, clock } = recorder()
  for (let i = 0; i < 10_000; i++) rec.record('revoked', pat('a'), '10.0.0.1', `r${i}`)
  rec.record('expired', pat('a'), '10.0.0.2', 'x')
  rec.record('revoked', pat('b'), '10.0.0.3', 'y')
  for (const reason of ['unknown', 'bad_secret', 'ok', 'forbidden', 'rate_limited']) rec.record(reason, pat('c'), null, null)
  t.equal(rec.pending, 3, 'other reasons are not use-events')
  await rec.flush()
  t.equal(written.length, 1, 'one batch')
  t.same(written[0]?.map(e => [e.kind, e.credential.id, e.clientIp, e.requestId]), [
    ['used_after_revoke', 'a', '10.0.0.1', 'r0'],
    ['used_after_expiry', 'a', '10.0.0.2', 'x'],
    ['used_after_revoke', 'b', '10.0.0.3', 'y']
  ])

  clock.now += 59_999
  rec.record('revoked', pat('a'), null, 'late')
  await rec.flush()
  t.equal(written.length, 1, 'still inside the minute: nothing')
  clock.now += 1
  rec.record('revoked', pat('a'), null, 'next')
  await rec.flush()
  t.same(written[1]?.map(e => e.requestId), ['next'], 'a new minute: one more')
  t.equal(written[1]?.[0]?.at.getTime(), clock.now, 'dated when the request came')
})

t.test('reasons map to kinds', async t => {
  const { rec, written } = recorder()
  for (const [i, reason] of ['revoked', 'expired', 'suspended', 'not_member'].entries()) rec.record(reason, pat(`p${i}`), null, null)
  await rec.flush()
  t.same(written[0]?.map(e => e.kind), ['used_after_revoke', 'used_after_expiry', 'used_while_suspended', 'used_after_removal'])
})

t.test('bounded: beyond maxPending new events are dropped and counted', async t => {
  const { rec, written, dropped } = recorder({ maxPending: 5 })
  for (let i = 0; i < 8; i++) rec.record('revoked', pat(`k${i}`), null, null)
  t.equal(rec.pending, 5)
  t.equal(dropped.n, 3)
  await rec.flush()
  t.equal(written[0]?.length, 5)
})

t.test('a failed write is retried on the next flushes, then dropped', async t => {
  let fail = 2
  const written: NewEvent[][] = []
  const errors: unknown[] = []
  const { rec, dropped } = recorder({
    write: async events => {
      if (fail-- > 0) throw new Error('database down')
      written.push(events)
    },
    onError: err => errors.push(err)
  })
  rec.record('revoked', pat('a'), null, null)
  await rec.flush()
  await rec.flush()
  t.equal(written.length, 0)
  t.equal(rec.pending, 1, 'kept for the next flush')
  await rec.flush()
  t.equal(written[0]?.length, 1, 'written once the database answers')
  t.equal(errors.length, 2)
  t.equal(dropped.n, 0)

  const always = recorder({ write: async () => { throw new Error('down for good') }, onError: () => {} })
  always.rec.record('revoked', pat('z'), null, null)
  for (let i = 0; i < 5; i++) await always.rec.flush()
  t.equal(always.rec.pending, 0, 'given up after three attempts')
  t.equal(always.dropped.n, 1, 'and counted')
})

t.test('close() writes what is pending and records nothing after', async t => {
  const { rec, written } = recorder()
  rec.record('revoked', pat('a'), null, null)
  await rec.close()
  t.equal(written[0]?.length, 1)
  rec.record('revoked', pat('b'), null, null)
  t.equal(rec.pending, 0)
})

t.test('the timer writes on its own', async t => {
  const written: NewEvent[][] = []
  const rec = createUseEventRecorder({ flushIntervalMs: 20, minIntervalMs: 60_000, maxPending: 10, write: async e => { written.push(e) } })
  t.teardown(() => rec.close())
  rec.record('revoked', pat('a'), null, null)
  const end = Date.now() + 10_000
  while (written.length === 0 && Date.now() < end) await new Promise(resolve => setTimeout(resolve, 10))
  t.equal(written.length, 1)
})
