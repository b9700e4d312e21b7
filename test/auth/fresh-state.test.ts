import t, { type Test } from 'tap'
import { startStack, type Stack, type Minted } from '../helpers/stack.js'

/** Two good requests: afterwards the prefix cache and the memo are warm. */
async function warm (t: Test, env: Stack, pat: Minted): Promise<void> {
  t.equal((await env.get('/api/scans', pat.token)).statusCode, 200)
  t.equal((await env.get('/api/scans', pat.token)).statusCode, 200)
  t.ok(env.sidecar.memo.size > 0, 'memo warm')
}

t.test('state changes take effect on the very next request, with cache and memo warm', async t => {
  const env = await startStack(t)
  const expectUnauthorized = async (pat: Minted, what: string): Promise<void> => {
    const res = await env.get('/api/scans', pat.token)
    t.equal(res.statusCode, 401, what)
    t.equal(res.json().error, 'unauthorized', what)
  }

  t.test('revocation through the CLI', async t => {
    const pat = await env.mintPat()
    await warm(t, env, pat)
    await env.revoke(pat.id)
    await expectUnauthorized(pat, 'revoked')
  })

  t.test('suspension of the user', async t => {
    const pat = await env.mintPat()
    await warm(t, env, pat)
    await env.sql.query("UPDATE users SET status = 'suspended' WHERE id = $1", [pat.userId])
    await expectUnauthorized(pat, 'suspended')
    await env.sql.query("UPDATE users SET status = 'active' WHERE id = $1", [pat.userId])
    t.equal((await env.get('/api/scans', pat.token)).statusCode, 200, 'reinstated user works again')
  })

  t.test('deleted user (status and row)', async t => {
    const pat = await env.mintPat()
    await warm(t, env, pat)
    await env.sql.query("UPDATE users SET status = 'deleted' WHERE id = $1", [pat.userId])
    await expectUnauthorized(pat, 'status deleted')
    const pat2 = await env.mintPat()
    await warm(t, env, pat2)
    await env.sql.query('DELETE FROM users WHERE id = $1', [pat2.userId])
    await expectUnauthorized(pat2, 'row deleted')
  })

  t.test('removal from the org', async t => {
    const pat = await env.mintPat()
    await warm(t, env, pat)
    await env.sql.query('DELETE FROM org_memberships WHERE org_id = $1 AND user_id = $2', [pat.orgId, pat.userId])
    await expectUnauthorized(pat, 'not a member')
  })

  t.test('membership in another org does not count', async t => {
    const pat = await env.mintPat()
    await warm(t, env, pat)
    const other = await env.createOrg()
    await env.addMember(other, pat.userId, 'owner')
    await env.sql.query('DELETE FROM org_memberships WHERE org_id = $1 AND user_id = $2', [pat.orgId, pat.userId])
    await expectUnauthorized(pat, 'bound to its own org')
  })

  t.test('role downgrade narrows at once', async t => {
    const pat = await env.mintPat({ role: 'member' })
    await warm(t, env, pat)
    const post = await env.request('/api/scans', { method: 'POST', headers: { 'x-api-key': pat.token } })
    t.equal(post.statusCode, 200)
    await env.sql.query("UPDATE org_memberships SET role = 'viewer' WHERE org_id = $1 AND user_id = $2", [pat.orgId, pat.userId])
    const denied = await env.request('/api/scans', { method: 'POST', headers: { 'x-api-key': pat.token } })
    t.equal(denied.statusCode, 403)
    t.equal(denied.json().error, 'forbidden')
    t.equal(denied.headers['x-hg-required-permission'], 'scans:write')
    t.match(denied.json().message, /scans:write/)
    const get = await env.get('/api/scans', pat.token)
    t.equal(get.statusCode, 200)
    t.equal(env.upstream.requests.at(-1)?.headers['x-hg-role'], 'viewer')
    t.equal(env.upstream.requests.at(-1)?.headers['x-hg-permissions'], 'reports:read,scans:read')
  })

  t.test('expiry', async t => {
    const pat = await env.mintPat()
    await warm(t, env, pat)
    await env.sql.query("UPDATE personal_access_tokens SET expires_at = now() - interval '1 second' WHERE id = $1", [pat.id])
    const res = await env.get('/api/scans', pat.token)
    t.equal(res.statusCode, 401)
    t.same(res.json(), { error: 'token_expired', message: 'The credential has expired' })
  })
})

t.test('the second request with the same token does no bcrypt compare', async t => {
  const env = await startStack(t)
  const pat = await env.mintPat()
  t.equal((await env.get('/api/scans', pat.token)).statusCode, 200)
  const after = env.sidecar.bcrypt.compares
  t.ok(after >= 1)
  for (let i = 0; i < 5; i++) t.equal((await env.get('/api/scans', pat.token)).statusCode, 200)
  t.equal(env.sidecar.bcrypt.compares, after, 'memo hits: no bcrypt')
})

t.test('the memo is checked against the stored hash: a changed hash forces bcrypt again', async t => {
  const env = await startStack(t)
  const pat = await env.mintPat()
  t.equal((await env.get('/api/scans', pat.token)).statusCode, 200)
  await env.sql.query("UPDATE personal_access_tokens SET secret_hash = '$2b$04$invalidinvalidinvalidinOOOOOOOOOOOOOOOOOOOOOOOOOOOOOOO' WHERE id = $1", [pat.id])
  const res = await env.get('/api/scans', pat.token)
  t.equal(res.statusCode, 401, 'the old secret no longer matches the new hash')
})

t.test('memo disabled (ttl 0): every request runs bcrypt and still passes', async t => {
  const env = await startStack(t, { config: { auth: { memoTtlSeconds: 0 } } })
  const pat = await env.mintPat()
  for (let i = 0; i < 3; i++) t.equal((await env.get('/api/scans', pat.token)).statusCode, 200)
  t.equal(env.sidecar.bcrypt.compares, 3)
})

t.test('concurrent requests share one fresh-state query, sent after they all arrived', async t => {
  const env = await startStack(t)
  const pats = await Promise.all([env.mintPat(), env.mintPat(), env.mintPat()])
  for (const p of pats) t.equal((await env.get('/api/scans', p.token)).statusCode, 200)
  let stateQueries = 0
  env.sidecar.db.onQuery(name => { if (name === 'hg_pat_states') stateQueries++ })
  const results = await Promise.all(Array.from({ length: 30 }, (_, i) => env.get('/api/scans', (pats[i % 3] as Minted).token)))
  t.ok(results.every(r => r.statusCode === 200))
  t.ok(stateQueries >= 1 && stateQueries <= 30, `${stateQueries} state queries for 30 requests`)
  // Revoke, then fire at once: none may be served from a query that started before.
  await env.revoke((pats[0] as Minted).id)
  const after = await Promise.all(Array.from({ length: 10 }, () => env.get('/api/scans', (pats[0] as Minted).token)))
  t.ok(after.every(r => r.statusCode === 401))
})
