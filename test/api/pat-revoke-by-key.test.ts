import t from 'tap'
import { rememberSecret, startStack } from '../helpers/stack.js'

/** docs/DESIGN.md §5, issue 17 item 16: DELETE /api/personal-access-tokens/:id is for a PAT's user, never for an API key. */

t.test('an admin-role API key cannot revoke a PAT through the self-service route', async t => {
  const env = await startStack(t)
  const admin = await env.mintPat({ role: 'admin' })
  const orgId = admin.orgId
  const colleague = await env.mintPat({ orgId, role: 'member' })
  const key = await env.service.createApiKey({ orgId, createdBy: admin.userId, name: 'automation', role: 'admin' })
  rememberSecret(key.token)

  const del = (token: string, id: string): Promise<{ statusCode: number, json: () => Record<string, unknown> }> =>
    env.request(`/api/personal-access-tokens/${id}`, { method: 'DELETE', headers: { 'x-api-key': token } })

  for (const [what, id] of [['a colleague\'s PAT', colleague.id], ['the admin\'s PAT', admin.id], ['a token that does not exist', '00000000-0000-0000-0000-000000000000'], ['not an id', 'x']] as const) {
    const res = await del(key.token, id)
    t.equal(res.statusCode, 403, what)
    t.match(res.json(), { error: 'forbidden', message: /an API key cannot revoke one/ }, `${what}: the same answer, existence not revealed`)
  }
  t.equal((await env.get('/api/scans', colleague.token)).statusCode, 200, 'the colleague\'s token still works')
  t.equal((await env.get('/api/scans', admin.token)).statusCode, 200)
  const events = await env.sql.query("SELECT count(*)::int AS n FROM credential_events WHERE kind = 'revoked'")
  t.equal(events.rows[0]?.n, 0, 'nothing revoked, nothing recorded')

  t.equal((await del(admin.token, colleague.id)).statusCode, 204, 'a PAT with tokens:manage still revokes in its org')
  t.equal((await env.get('/api/scans', colleague.token)).statusCode, 401)
  t.equal((await env.request(`/api/api-keys/${key.id}`, { method: 'DELETE', headers: { 'x-api-key': key.token } })).statusCode, 204, 'the key manages API keys, its own route')
})
