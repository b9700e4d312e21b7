import t from 'tap'
import { startStack } from '../helpers/stack.js'

t.test('GET /api/personal-access-tokens lists exactly the caller\'s tokens in the token\'s org, never a hash or secret', async t => {
  const env = await startStack(t)
  const caller = await env.mintPat({ role: 'member' })
  const second = await env.mintPat({ userId: caller.userId, orgId: caller.orgId, permissions: ['scans:read'] })
  const otherOrg = await env.createOrg()
  await env.addMember(otherOrg, caller.userId, 'member')
  await env.mintPat({ userId: caller.userId, orgId: otherOrg })
  await env.mintPat({ orgId: caller.orgId, role: 'member' }) // someone else in the same org

  const res = await env.get('/api/personal-access-tokens', caller.token)
  t.equal(res.statusCode, 200)
  t.equal(env.upstream.requests.length, 0, 'never forwarded')
  const rows = res.json<Array<Record<string, unknown>>>()
  t.same(rows.map(r => r.id).sort(), [caller.id, second.id].sort())
  for (const r of rows) {
    t.same(Object.keys(r).sort(), ['createdAt', 'expiresAt', 'id', 'lastUsedAt', 'name', 'permissions', 'prefix', 'revoked', 'revokedAt'])
  }
  t.same(rows.find(r => r.id === second.id)?.permissions, ['scans:read'])
  t.notMatch(res.text, /\$2[aby]\$/, 'no bcrypt hash in the raw body')
  t.notMatch(res.text, /hg_pat_[0-9a-f]{48}/, 'no secret in the raw body')
  t.notMatch(res.text, /secret|hash/i)
})

t.test('DELETE /api/personal-access-tokens/:id: own, tokens:manage, cross-user and cross-org', async t => {
  const env = await startStack(t)
  const member = await env.mintPat({ role: 'member' })
  const orgId = member.orgId
  const colleague = await env.mintPat({ orgId, role: 'member' })
  const admin = await env.mintPat({ orgId, role: 'admin' })
  const outsider = await env.mintPat({ role: 'owner' })

  const del = (token: string, id: string): Promise<{ statusCode: number, text: string }> => env.request(`/api/personal-access-tokens/${id}`, { method: 'DELETE', headers: { 'x-api-key': token } })

  const cross = await del(member.token, colleague.id)
  t.equal(cross.statusCode, 404, 'someone else\'s token without tokens:manage')
  t.same(JSON.parse(cross.text), { error: 'not_found', message: 'Not found' })
  t.equal((await del(outsider.token, colleague.id)).statusCode, 404, 'another org\'s token, even for an owner')
  t.equal((await del(member.token, '00000000-0000-0000-0000-000000000000')).statusCode, 404)
  t.equal((await del(member.token, 'not-a-uuid')).statusCode, 404)
  t.equal((await env.get('/api/scans', colleague.token)).statusCode, 200, 'still alive')

  t.equal((await del(admin.token, colleague.id)).statusCode, 204, 'tokens:manage revokes in its org')
  t.equal((await env.get('/api/scans', colleague.token)).statusCode, 401)

  const own = await env.mintPat({ userId: member.userId, orgId })
  t.equal((await del(member.token, own.id)).statusCode, 204, 'own token')
  t.equal((await env.get('/api/scans', own.token)).statusCode, 401)
  t.equal((await del(member.token, member.id)).statusCode, 204, 'the very token making the request')
  t.equal((await env.get('/api/scans', member.token)).statusCode, 401)
  t.equal(env.upstream.requests.filter(r => r.url.startsWith('/api/personal-access-tokens')).length, 0)

  for (const [method, path] of [['POST', '/api/personal-access-tokens'], ['PUT', `/api/personal-access-tokens/${admin.id}`], ['GET', '/api/personal-access-tokens/'], ['GET', `/api/personal-access-tokens/${admin.id}/x`]] as const) {
    const r = await env.request(path, { method, headers: { 'x-api-key': admin.token } })
    t.ok(r.statusCode === 404 || r.statusCode === 405, `${method} ${path}: ${r.statusCode}`)
  }
  t.equal(env.upstream.requests.filter(r => r.url.startsWith('/api/personal-access-tokens')).length, 0, 'nothing under the prefix is ever forwarded')
  t.equal((await env.get('/api/personal-access-tokens')).statusCode, 401, 'needs a credential')
})

t.test('a token revoked through one sidecar fails on another sharing PostgreSQL and Redis', async t => {
  const a = await startStack(t)
  const b = await startStack(t, { databaseUrl: a.databaseUrl, redisKeyPrefix: a.redisKeyPrefix })
  const pat = await a.mintPat()
  for (const env of [a, b, a, b]) t.equal((await env.get('/api/scans', pat.token)).statusCode, 200)
  const del = await a.request(`/api/personal-access-tokens/${pat.id}`, { method: 'DELETE', headers: { 'x-api-key': pat.token } })
  t.equal(del.statusCode, 204)
  t.equal((await b.get('/api/scans', pat.token)).statusCode, 401, 'the other replica, memo and cache warm')
  t.equal((await a.get('/api/scans', pat.token)).statusCode, 401)
})
