import t from 'tap'
import { startStack, type Stack } from '../helpers/stack.js'

// DESIGN.md 8: no state lives in a sidecar that another replica needs to see.
// Each replica's memo and the shared Redis cache are warm before every change,
// so only the fresh-state read can refuse the next request.

async function replicas (t: Parameters<typeof startStack>[0]): Promise<Stack[]> {
  const a = await startStack(t)
  const b = await startStack(t, { databaseUrl: a.databaseUrl, redisKeyPrefix: a.redisKeyPrefix })
  const c = await startStack(t, { databaseUrl: a.databaseUrl, redisKeyPrefix: a.redisKeyPrefix })
  return [a, b, c]
}

async function statuses (all: Stack[], path: string, token: string, method = 'GET'): Promise<number[]> {
  return await Promise.all(all.map(async env => (await env.request(path, { method, headers: { 'x-api-key': token } })).statusCode))
}

t.test('3 replicas sharing PostgreSQL and Redis: a change through one is enforced by all on the next request', async t => {
  const all = await replicas(t)
  const [a] = all
  if (a === undefined) throw new Error('no replica')
  const orgId = await a.createOrg()

  const revoked = await a.mintPat({ orgId })
  const suspended = await a.mintPat({ orgId })
  const downgraded = await a.mintPat({ orgId, role: 'admin' })
  for (const p of [revoked, suspended, downgraded]) {
    for (let i = 0; i < 2; i++) t.same(await statuses(all, '/api/scans', p.token), [200, 200, 200], 'warm on every replica')
  }
  t.same(await statuses(all, '/api/scans', downgraded.token, 'POST'), [200, 200, 200], 'an admin writes')

  const del = await all[1]?.request(`/api/personal-access-tokens/${revoked.id}`, { method: 'DELETE', headers: { 'x-api-key': revoked.token } })
  t.equal(del?.statusCode, 204, 'revoked through the second replica')
  t.same(await statuses(all, '/api/scans', revoked.token), [401, 401, 401], 'revocation: refused by all three')

  await a.sql.query("UPDATE users SET status = 'suspended' WHERE id = $1", [suspended.userId])
  t.same(await statuses(all, '/api/scans', suspended.token), [401, 401, 401], 'suspension: refused by all three')

  await a.addMember(orgId, downgraded.userId, 'viewer')
  t.same(await statuses(all, '/api/scans', downgraded.token, 'POST'), [403, 403, 403], 'role downgrade: writes refused by all three')
  t.same(await statuses(all, '/api/scans', downgraded.token), [200, 200, 200], 'reads still allowed')

  const upstreamSaw = all.reduce((n, env) => n + env.upstream.requests.filter(r => r.headers['x-hg-credential-id'] === revoked.id).length, 0)
  t.equal(upstreamSaw, 6, 'the revoked token reached the upstream only before its revocation')
})
