import t from 'tap'
import { request } from '../helpers/http.js'
import { rememberSecret, startStack } from '../helpers/stack.js'

const ADMIN_TOKEN = 'test-admin-token-not-a-secret-0001'

t.test('admin API: bearer required when ADMIN_TOKEN is set; create, list, revoke; OpenAPI', async t => {
  const env = await startStack(t, { config: { adminToken: ADMIN_TOKEN } })
  const orgId = await env.createOrg()
  const userId = await env.createUser()
  await env.addMember(orgId, userId, 'admin')
  const auth = { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }

  for (const headers of [{}, { authorization: 'Bearer wrong' }, { authorization: `Bearer ${ADMIN_TOKEN}x` }, { authorization: ADMIN_TOKEN }]) {
    const res = await request(env.adminPort, `/admin/personal-access-tokens?userId=${userId}`, { headers })
    t.equal(res.statusCode, 401, JSON.stringify(headers))
    t.equal(res.json().error, 'unauthorized')
  }
  t.equal((await request(env.adminPort, '/admin/openapi.json')).statusCode, 401)

  const created = await request(env.adminPort, '/admin/personal-access-tokens', {
    method: 'POST', headers: auth, body: JSON.stringify({ userId, orgId, name: 'settings page', expiresInDays: 10, permissions: ['scans:read'] })
  })
  t.equal(created.statusCode, 201)
  const c = created.json<{ id: string, token: string, prefix: string, name: string, expiresAt: string, permissions: string[], warnings: string[] }>()
  rememberSecret(c.token)
  t.match(c, { name: 'settings page', permissions: ['scans:read'], warnings: [] })
  t.match(c.token, /^hg_pat_[0-9a-f]{48}$/)
  t.equal((await env.get('/api/scans', c.token)).statusCode, 200)

  const noExpiry = await request(env.adminPort, '/admin/personal-access-tokens', { method: 'POST', headers: auth, body: JSON.stringify({ userId, orgId, name: 'forever', noExpiry: true }) })
  t.equal(noExpiry.statusCode, 201)
  rememberSecret(noExpiry.json<{ token: string }>().token)
  t.match(noExpiry.json<{ warnings: string[] }>().warnings[0], /never expires/, 'warned in the response')

  const bad = await request(env.adminPort, '/admin/personal-access-tokens', { method: 'POST', headers: auth, body: JSON.stringify({ userId, orgId, name: 'x', permissions: ['org:manage'] }) })
  t.equal(bad.statusCode, 400)
  t.match(bad.json(), { error: 'bad_request', message: /beyond the user's current role admin: org:manage/ })
  const invalid = await request(env.adminPort, '/admin/personal-access-tokens', { method: 'POST', headers: auth, body: JSON.stringify({ userId: 'nope', orgId, name: 'x' }) })
  t.equal(invalid.statusCode, 400)
  t.equal(invalid.json().error, 'bad_request')

  const list = await request(env.adminPort, `/admin/personal-access-tokens?userId=${userId}`, { headers: auth })
  t.equal(list.statusCode, 200)
  t.equal(list.json<unknown[]>().length, 2)
  t.notMatch(list.text, /hg_pat_[0-9a-f]{48}|\$2[aby]\$/)

  const del = await request(env.adminPort, `/admin/personal-access-tokens/${c.id}`, { method: 'DELETE', headers: { authorization: auth.authorization } })
  t.equal(del.statusCode, 204)
  t.equal((await env.get('/api/scans', c.token)).statusCode, 401)
  const missing = await request(env.adminPort, '/admin/personal-access-tokens/00000000-0000-0000-0000-000000000000', { method: 'DELETE', headers: { authorization: auth.authorization } })
  t.equal(missing.statusCode, 404)
  t.equal(missing.json().error, 'not_found')

  const key = await request(env.adminPort, '/admin/api-keys', { method: 'POST', headers: auth, body: JSON.stringify({ orgId, createdBy: userId, name: 'ci', role: 'member' }) })
  t.equal(key.statusCode, 201)
  const k = key.json<{ id: string, token: string, role: string }>()
  rememberSecret(k.token)
  t.equal(k.role, 'member')
  t.equal((await env.get('/api/scans', k.token)).statusCode, 200)
  const keys = await request(env.adminPort, `/admin/api-keys?orgId=${orgId}`, { headers: auth })
  t.equal(keys.json<unknown[]>().length, 1)
  t.equal((await request(env.adminPort, `/admin/api-keys/${k.id}`, { method: 'DELETE', headers: { authorization: auth.authorization } })).statusCode, 204)
  t.equal((await env.get('/api/scans', k.token)).statusCode, 401)

  const doc = await request(env.adminPort, '/admin/openapi.json', { headers: auth })
  t.equal(doc.statusCode, 200)
  const spec = doc.json<{ openapi: string, paths: Record<string, Record<string, unknown>> }>()
  t.match(spec.openapi, /^3\./)
  t.same(Object.keys(spec.paths).sort(), ['/admin/api-keys', '/admin/api-keys/{id}', '/admin/credential-events', '/admin/leaked-credentials', '/admin/personal-access-tokens', '/admin/personal-access-tokens/{id}'])
  t.same(Object.keys(spec.paths['/admin/personal-access-tokens'] ?? {}).sort(), ['get', 'post'])
  t.same(Object.keys(spec.paths['/admin/api-keys/{id}'] ?? {}).sort(), ['delete'])
})

t.test('admin API without ADMIN_TOKEN is open (it binds to 127.0.0.1 by default)', async t => {
  const env = await startStack(t)
  t.equal(env.config.server.adminHost, '127.0.0.1')
  const res = await request(env.adminPort, '/admin/openapi.json')
  t.equal(res.statusCode, 200)
})
