import autocannon from 'autocannon'
import t from 'tap'
import { eventRows } from '../helpers/audit.js'
import { startStack } from '../helpers/stack.js'

/** A bounded burst: exactly `amount` requests over `connections` keep-alive connections. */
async function burst (port: number, token: string, amount: number): Promise<{ non2xx: number, total: number, errors: number }> {
  const r = await autocannon({
    url: `http://127.0.0.1:${port}/api/scans`,
    headers: { 'x-api-key': token },
    connections: 16,
    amount,
    // A bound on the time too: never a test that runs away on a stalled server.
    timeout: 10
  })
  return { non2xx: r.non2xx, total: r.requests.total + r.errors, errors: r.errors }
}

t.test('10,000 requests with a revoked token write at most 2 used_after_revoke rows per minute', async t => {
  const env = await startStack(t, { config: { audit: { useEvents: { flushIntervalMs: 200, minIntervalSeconds: 60 } } } })
  const pat = await env.mintPat()
  const orgId = pat.orgId
  await env.addMember(orgId, pat.userId, 'admin')
  const key = await env.service.createApiKey({ orgId, createdBy: pat.userId, name: 'k', role: 'viewer' })
  t.equal((await env.get('/api/scans', pat.token)).statusCode, 200)
  await env.service.revokePat(pat.id)
  await env.service.revokeApiKey(key.id)
  const inserts: number[] = []
  env.sidecar.db.onQuery(name => { if (name === 'hg_event_insert_batch') inserts.push(Date.now()) })

  const start = Date.now()
  const [p, k] = await Promise.all([burst(env.port, pat.token, 10_000), burst(env.port, key.token, 2_000)])
  const seconds = (Date.now() - start) / 1000
  t.comment(`12,000 refused requests in ${seconds.toFixed(1)} s; ${inserts.length} batch INSERT(s) meanwhile`)
  t.equal(p.errors, 0)
  t.equal(p.non2xx, 10_000, 'every PAT request refused')
  t.equal(k.non2xx, 2_000, 'every API key request refused')
  await env.sidecar.useEvents.flush()

  // Per minute per replica: the window is a minute, so a burst shorter than that gives one
  // row per credential and kind, and one that straddles a window boundary at most two.
  const bound = Math.ceil(seconds / 60) + 1
  const patRows = await eventRows(env, pat.id, 'used_after_revoke')
  const keyRows = await eventRows(env, key.id, 'used_after_revoke')
  t.ok(patRows.length >= 1 && patRows.length <= Math.min(2, bound), `PAT: ${patRows.length} row(s)`)
  t.ok(keyRows.length >= 1 && keyRows.length <= Math.min(2, bound), `API key: ${keyRows.length} row(s)`)
  t.equal(patRows[0]?.client_ip, '127.0.0.1')
  t.ok(inserts.length <= 2 * bound, 'a handful of INSERTs, not one per request')
  t.equal(env.sidecar.useEvents.pending, 0)
})

t.test('events are written off the request path: a locked table does not hold up a refusal', async t => {
  const env = await startStack(t, { config: { audit: { useEvents: { flushIntervalMs: 100, minIntervalSeconds: 60 } } } })
  const pats = await Promise.all(Array.from({ length: 3 }, () => env.mintPat()))
  for (const p of pats) await env.service.revokePat(p.id)

  const locker = await env.sql.connect()
  t.teardown(() => locker.release())
  await locker.query('BEGIN')
  await locker.query('LOCK TABLE credential_events IN ACCESS EXCLUSIVE MODE')
  try {
    for (const p of pats) {
      const res = await env.get('/api/scans', p.token)
      t.equal(res.statusCode, 401, 'answered while the event table is locked')
      t.equal(res.json().error, 'unauthorized')
    }
    // Long enough for a flush to start and block on the lock.
    await new Promise(resolve => setTimeout(resolve, 300))
  } finally {
    await locker.query('ROLLBACK')
  }
  // Once the table is free (a blocked INSERT that timed out is retried), every event lands.
  const end = Date.now() + 20_000
  let found = 0
  while (Date.now() < end) {
    await env.sidecar.useEvents.flush()
    found = 0
    for (const p of pats) found += (await eventRows(env, p.id, 'used_after_revoke')).length
    if (found === pats.length) break
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  t.equal(found, pats.length, 'all written after the lock was released')
})
