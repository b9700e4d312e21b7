import t from 'tap'
import { rememberSecret, startStack, type Stack } from '../helpers/stack.js'

async function orgWith (env: Stack, role: string): Promise<{ orgId: string, userId: string }> {
  const orgId = await env.createOrg()
  const userId = await env.createUser()
  await env.addMember(orgId, userId, role)
  return { orgId, userId }
}

t.test('a valid API key passes with its fixed role and permissions; no bcrypt on its path', async t => {
  const env = await startStack(t)
  const { orgId, userId } = await orgWith(env, 'admin')
  const key = await env.service.createApiKey({ orgId, createdBy: userId, name: 'ci', role: 'member', permissions: ['scans:read', 'scans:write'] })
  rememberSecret(key.token)
  t.match(key.token, /^hg_key_[0-9a-f]{48}$/)
  const row = await env.sql.query<{ secret_sha256: Buffer }>('SELECT secret_sha256 FROM api_keys WHERE id = $1', [key.id])
  t.equal(row.rows[0]?.secret_sha256.length, 32, 'SHA-256, 32 raw bytes')

  const compares = env.sidecar.bcrypt.compares
  const res = await env.request('/api/scans', { method: 'POST', headers: { 'x-api-key': key.token, 'x-hg-user-id': 'forged' } })
  t.equal(res.statusCode, 200)
  const h = env.upstream.requests.at(-1)?.headers ?? {}
  t.same(Object.fromEntries(Object.entries(h).filter(([k]) => k.startsWith('x-hg-'))), {
    'x-hg-auth-type': 'api_key',
    'x-hg-org-id': orgId,
    'x-hg-role': 'member',
    'x-hg-permissions': 'scans:read,scans:write',
    'x-hg-credential-id': key.id,
    'x-hg-credential-prefix': key.prefix
  }, 'no x-hg-user-id for an API key')
  for (let i = 0; i < 5; i++) t.equal((await env.get('/api/scans', key.token)).statusCode, 200)
  t.equal(env.sidecar.bcrypt.compares, compares, 'no bcrypt call on the API-key path')
  t.equal((await env.get('/api/scans', key.token.slice(0, -1) + (key.token.endsWith('0') ? '1' : '0'))).statusCode, 401)
  t.equal(env.sidecar.bcrypt.compares, compares, 'not even for a wrong key')
})

t.test('survives its creator\'s suspension and removal; revocation and expiry stop it on the next request', async t => {
  const env = await startStack(t)
  const { orgId, userId } = await orgWith(env, 'owner')
  const key = await env.service.createApiKey({ orgId, createdBy: userId, name: 'ci', role: 'viewer' })
  rememberSecret(key.token)
  t.equal((await env.get('/api/scans', key.token)).statusCode, 200)
  await env.sql.query("UPDATE users SET status = 'suspended' WHERE id = $1", [userId])
  t.equal((await env.get('/api/scans', key.token)).statusCode, 200, 'creator suspended')
  await env.sql.query('DELETE FROM org_memberships WHERE user_id = $1', [userId])
  await env.sql.query('DELETE FROM users WHERE id = $1', [userId])
  t.equal((await env.get('/api/scans', key.token)).statusCode, 200, 'creator removed and deleted')

  const out = await env.cli('api-key', 'revoke', key.id)
  t.equal(out.code, 0, out.stderr)
  t.equal((await env.get('/api/scans', key.token)).statusCode, 401, 'revoked')

  const { orgId: o2, userId: u2 } = await orgWith(env, 'admin')
  const k2 = await env.service.createApiKey({ orgId: o2, createdBy: u2, name: 'short', role: 'viewer' })
  rememberSecret(k2.token)
  t.equal((await env.get('/api/scans', k2.token)).statusCode, 200)
  await env.sql.query("UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = $1", [k2.id])
  const exp = await env.get('/api/scans', k2.token)
  t.equal(exp.statusCode, 401)
  t.equal(exp.json().error, 'token_expired')
})

t.test('creation rules: member cannot, admin not above itself, owner can', async t => {
  const env = await startStack(t)
  const orgId = await env.createOrg()
  const ids: Record<string, string> = {}
  for (const role of ['member', 'admin', 'owner']) {
    ids[role] = await env.createUser()
    await env.addMember(orgId, ids[role] as string, role)
  }
  const base = ['api-key', 'create', '--org-id', orgId, '--name', 'k']
  const member = await env.cli(...base, '--created-by', ids.member as string, '--role', 'viewer')
  t.not(member.code, 0)
  t.match(member.stderr, /only an admin or owner/)
  const adminOwner = await env.cli(...base, '--created-by', ids.admin as string, '--role', 'owner')
  t.not(adminOwner.code, 0)
  t.match(adminOwner.stderr, /an admin cannot create a key with the higher role owner/)
  const adminAdmin = await env.cli(...base, '--created-by', ids.admin as string, '--role', 'admin', '--json')
  t.equal(adminAdmin.code, 0, adminAdmin.stderr)
  const owner = await env.cli(...base, '--created-by', ids.owner as string, '--role', 'owner', '--permissions', 'org:manage', '--json')
  t.equal(owner.code, 0, owner.stderr)
  const o = JSON.parse(owner.stdout) as Record<string, unknown>
  t.same(Object.keys(o).sort(), ['expiresAt', 'id', 'name', 'permissions', 'prefix', 'role', 'token'])
  t.equal(o.role, 'owner')
  const bad = await env.cli(...base, '--created-by', ids.owner as string, '--role', 'viewer', '--permissions', 'scans:write')
  t.match(bad.stderr, /beyond the key's role viewer/)
  const list = await env.cli('api-key', 'list', '--org-id', orgId, '--json')
  t.equal((JSON.parse(list.stdout) as unknown[]).length, 2)
  t.notMatch(list.stdout, /hg_key_[0-9a-f]{48}/)
})

t.test('self-service /api/api-keys needs api-keys:manage; never forwarded', async t => {
  const env = await startStack(t)
  const admin = await env.mintPat({ role: 'admin' })
  const member = await env.mintPat({ orgId: admin.orgId, role: 'member' })
  const key = await env.service.createApiKey({ orgId: admin.orgId, createdBy: admin.userId, name: 'ci', role: 'viewer' })
  rememberSecret(key.token)
  const foreign = await env.mintPat({ role: 'owner' })
  const denied = await env.get('/api/api-keys', member.token)
  t.equal(denied.statusCode, 403)
  t.equal(denied.headers['x-hg-required-permission'], 'api-keys:manage')
  const list = await env.get('/api/api-keys', admin.token)
  t.equal(list.statusCode, 200)
  t.same(list.json<Array<{ id: string }>>().map(k => k.id), [key.id])
  t.notMatch(list.text, /hg_key_[0-9a-f]{48}|sha256/)
  t.equal((await env.request(`/api/api-keys/${key.id}`, { method: 'DELETE', headers: { 'x-api-key': foreign.token } })).statusCode, 404, 'other org')
  t.equal((await env.request(`/api/api-keys/${key.id}`, { method: 'DELETE', headers: { 'x-api-key': admin.token } })).statusCode, 204)
  t.equal((await env.get('/api/scans', key.token)).statusCode, 401)
  t.equal(env.upstream.requests.filter(r => r.url.startsWith('/api/api-keys')).length, 0)
})

t.test('apiKeys: passthrough forwards hg_key_ untouched; reject refuses them', async t => {
  const pass = await startStack(t, { config: { auth: { apiKeys: 'passthrough' } } })
  const fake = 'hg_key_' + 'ab'.repeat(24)
  const res = await pass.request('/api/scans', { headers: { 'x-api-key': fake, 'x-hg-role': 'owner' } })
  t.equal(res.statusCode, 200)
  const h = pass.upstream.requests.at(-1)?.headers ?? {}
  t.equal(h['x-api-key'], fake, 'forwarded untouched')
  t.same(Object.keys(h).filter(k => k.startsWith('x-hg-')), [], 'no identity headers, inbound x-hg-* stripped')
  const pat = await pass.mintPat()
  t.equal((await pass.get('/api/scans', pat.token)).statusCode, 200, 'PATs still validated')
  t.equal((await pass.get('/api/scans', 'hg_pat_' + 'ab'.repeat(24))).statusCode, 401)

  const reject = await startStack(t, { config: { auth: { apiKeys: 'reject' } } })
  const { orgId, userId } = await orgWith(reject, 'owner')
  const key = await reject.service.createApiKey({ orgId, createdBy: userId, name: 'k', role: 'viewer' })
  rememberSecret(key.token)
  const r = await reject.get('/api/scans', key.token)
  t.equal(r.statusCode, 401)
  t.equal(r.json().error, 'unauthorized')
  t.equal(reject.upstream.requests.length, 0)
})
