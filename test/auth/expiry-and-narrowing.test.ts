import t from 'tap'
import { startStack } from '../helpers/stack.js'

const DAY = 86_400_000

t.test('expiry policy: default lifetime, maximum, no-expiry per config', async t => {
  const env = await startStack(t, { config: { tokens: { defaultLifetimeDays: 30, maxLifetimeDays: 90, allowNoExpiry: false } } })
  const pat = await env.mintPat()
  const days = (Date.parse(pat.expiresAt ?? '') - Date.now()) / DAY
  t.ok(days > 29.9 && days <= 30, `default lifetime applied: ${days}`)
  const res = await env.get('/api/scans', pat.token)
  t.equal(res.headers['x-hg-token-expires'], pat.expiresAt)

  await t.rejects(env.mintPat({ expiresAt: new Date(Date.now() + 91 * DAY) }), /maximum lifetime of 90 days/)
  await t.rejects(env.mintPat({ expiresAt: new Date(Date.now() - 1000) }), /in the past/)
  await t.rejects(env.mintPat({ noExpiry: true }), /not allowed/)
  const ok = await env.mintPat({ expiresAt: new Date(Date.now() + 89 * DAY) })
  t.ok(ok.expiresAt)

  const open = await startStack(t, { config: { tokens: { allowNoExpiry: true } } })
  const forever = await open.mintPat({ noExpiry: true })
  t.equal(forever.expiresAt, null)
  t.match(forever.warnings[0], /never expires/)
  const r = await open.get('/api/scans', forever.token)
  t.equal(r.statusCode, 200)
  t.notOk('x-hg-token-expires' in r.headers)
})

t.test('an expired token is 401 token_expired', async t => {
  const env = await startStack(t)
  const pat = await env.mintPat()
  await env.sql.query("UPDATE personal_access_tokens SET expires_at = now() - interval '1 minute' WHERE id = $1", [pat.id])
  const res = await env.get('/api/scans', pat.token)
  t.equal(res.statusCode, 401)
  t.same(res.json(), { error: 'token_expired', message: 'The credential has expired' })
})

t.test('narrowing: the subset is bounded by the current role on every request', async t => {
  const env = await startStack(t)
  await t.rejects(env.mintPat({ role: 'viewer', permissions: ['scans:write'] }), /beyond the user's current role viewer/)
  const pat = await env.mintPat({ role: 'admin', permissions: ['scans:read'] })
  const setRole = (role: string): Promise<unknown> => env.sql.query('UPDATE org_memberships SET role = $3 WHERE org_id = $1 AND user_id = $2', [pat.orgId, pat.userId, role])
  const seen = async (): Promise<Record<string, unknown>> => {
    const res = await env.get('/api/scans', pat.token)
    t.equal(res.statusCode, 200)
    return env.upstream.requests.at(-1)?.headers ?? {}
  }
  t.equal((await seen())['x-hg-permissions'], 'scans:read')
  t.equal((await env.request('/api/scans', { method: 'POST', headers: { 'x-api-key': pat.token } })).statusCode, 403, 'the subset excludes scans:write even for an admin')

  await setRole('viewer')
  const h = await seen()
  t.equal(h['x-hg-permissions'], 'scans:read', 'a viewer still has scans:read')
  t.equal(h['x-hg-role'], 'viewer')

  await env.sql.query("UPDATE org_memberships SET role = 'auditor' WHERE org_id = $1 AND user_id = $2", [pat.orgId, pat.userId])
  const denied = await env.get('/api/scans', pat.token)
  t.equal(denied.statusCode, 403, 'a role without scans:read')
  t.equal(denied.headers['x-hg-required-permission'], 'scans:read')

  await setRole('owner')
  t.equal((await seen())['x-hg-permissions'], 'scans:read', 'an upgrade never widens beyond the subset')
})
