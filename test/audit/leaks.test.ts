import { hash } from 'node:crypto'
import { Redis } from 'ioredis'
import t from 'tap'
import { ADMIN_TOKEN, assertNoSecretsInEvents, eventRows } from '../helpers/audit.js'
import { request } from '../helpers/http.js'
import { REDIS_URL } from '../helpers/services.js'
import { rememberSecret, startStack, type Stack } from '../helpers/stack.js'

interface Verdict { token_hash: string, token_type: string, label: string }

const headers = { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }
const sha256 = (s: string): string => hash('sha256', s, 'hex')

async function report (env: Stack, items: unknown, extra: Record<string, string> = {}): Promise<{ statusCode: number, verdicts: Verdict[], text: string }> {
  const res = await request(env.adminPort, '/admin/leaked-credentials', { method: 'POST', headers: { ...headers, ...extra }, body: JSON.stringify(items) })
  return { statusCode: res.statusCode, verdicts: res.statusCode === 200 ? res.json<Verdict[]>() : [], text: res.text }
}

const github = (token: string, type = 'harborguard_personal_access_token'): Record<string, string> => ({
  token,
  type,
  url: 'https://github.com/octo-org/octo-repo/blob/1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b/config/.env',
  source: 'content'
})

t.test('leaked-credential reports (GitHub secret-scanning partner payload)', async t => {
  const env = await startStack(t, { config: { adminToken: ADMIN_TOKEN } })
  // A second replica on the same database and Redis: "every replica sees it on the next request".
  const replica = await startStack(t, { databaseUrl: env.databaseUrl, redisKeyPrefix: env.redisKeyPrefix, config: { adminToken: ADMIN_TOKEN } })
  const secrets: string[] = []
  const keep = (s: string): string => {
    rememberSecret(s)
    secrets.push(s)
    return s
  }

  t.test('a live PAT is revoked at once, on every replica; recorded with url and source', async t => {
    const pat = await env.mintPat()
    keep(pat.token)
    // Warm everything a request would use: the memo and the prefix cache on both replicas.
    for (const s of [env, replica, env, replica]) t.equal((await s.get('/api/scans', pat.token)).statusCode, 200)
    const redis = new Redis(REDIS_URL)
    t.teardown(() => redis.disconnect())
    const cacheKey = `${env.redisKeyPrefix}pat:prefix:${pat.prefix}`
    t.equal(await redis.exists(cacheKey), 1, 'the prefix list is cached')

    const res = await report(env, [github(pat.token)], { 'x-actor-id': 'github-secret-scanning', 'x-request-id': 'leak-1' })
    t.equal(res.statusCode, 200, res.text)
    t.same(res.verdicts, [{ token_hash: sha256(pat.token), token_type: 'harborguard_personal_access_token', label: 'true_positive' }])
    t.notMatch(res.text, pat.token, 'the answer does not echo the token')

    for (const s of [env, replica]) {
      const next = await s.get('/api/scans', pat.token)
      t.equal(next.statusCode, 401, 'the next request is refused')
      t.equal(next.json().error, 'unauthorized')
    }
    t.equal(await redis.exists(cacheKey), 0, 'the prefix cache was invalidated as by any revocation')

    const revoked = await eventRows(env, pat.id, 'revoked')
    t.match(revoked, [{ actor_type: 'leak_report', actor_id: 'github-secret-scanning', request_id: 'leak-1', client_ip: '127.0.0.1' }])
    const leak = await eventRows(env, pat.id, 'leak_reported')
    t.match(leak, [{
      credential_type: 'pat',
      prefix: pat.prefix,
      org_id: pat.orgId,
      user_id: pat.userId,
      actor_type: 'leak_report',
      actor_id: 'github-secret-scanning',
      request_id: 'leak-1',
      detail: { url: github('').url, source: 'content', tokenType: 'harborguard_personal_access_token', revokedNow: true }
    }])

    // Reported again (GitHub retries, or finds it elsewhere): ours, nothing more to revoke.
    const again = await report(env, [{ ...github(pat.token), source: 'commit' }])
    t.same(again.verdicts.map(v => v.label), ['true_positive'])
    t.equal((await eventRows(env, pat.id, 'revoked')).length, 1, 'not revoked twice')
    const leaks = await eventRows(env, pat.id, 'leak_reported')
    t.equal(leaks.length, 2, 'each report is recorded')
    t.match(leaks[1]?.detail, { source: 'commit', revokedNow: false })
  })

  t.test('an API key reported is revoked too', async t => {
    const owner = await env.mintPat({ role: 'admin' })
    keep(owner.token)
    const key = await env.service.createApiKey({ orgId: owner.orgId, createdBy: owner.userId, name: 'ci', role: 'viewer' })
    keep(key.token)
    t.equal((await replica.get('/api/scans', key.token)).statusCode, 200)
    const res = await report(env, [github(key.token, 'harborguard_api_key')])
    t.same(res.verdicts, [{ token_hash: sha256(key.token), token_type: 'harborguard_api_key', label: 'true_positive' }])
    t.equal((await replica.get('/api/scans', key.token)).statusCode, 401)
    t.match(await eventRows(env, key.id, 'leak_reported'), [{ credential_type: 'api_key', org_id: owner.orgId, user_id: null, detail: { revokedNow: true } }])
    t.match(await eventRows(env, key.id, 'revoked'), [{ actor_type: 'leak_report' }])
    t.equal((await env.get('/api/scans', owner.token)).statusCode, 200, 'the creator\'s own token is untouched')
  })

  t.test('false positives and foreign strings change nothing', async t => {
    const live = await env.mintPat()
    keep(live.token)
    t.equal((await env.get('/api/scans', live.token)).statusCode, 200)
    const countAll = async (): Promise<number> => (await env.sql.query<{ n: number }>('SELECT count(*)::int AS n FROM credential_events')).rows[0]?.n ?? 0
    const revokedCount = async (): Promise<number> => (await env.sql.query<{ n: number }>(`
      SELECT (SELECT count(*) FROM personal_access_tokens WHERE revoked_at IS NOT NULL) + (SELECT count(*) FROM api_keys WHERE revoked_at IS NOT NULL) AS n`)).rows[0]?.n ?? 0
    // Use-events of the tests before (refused requests) are written first.
    await Promise.all([env.sidecar.useEvents.flush(), replica.sidecar.useEvents.flush()])
    const eventsBefore = await countAll()
    const revokedBefore = await revokedCount()

    const wrongSecret = live.token.slice(0, -1) + (live.token.endsWith('0') ? '1' : '0')
    const items = [
      github(wrongSecret),                          // our prefix, not our secret
      github('hg_pat_' + 'f'.repeat(48)),           // our format, nobody's token
      github('hg_key_' + 'e'.repeat(48), 'harborguard_api_key'),
      github('ghp_' + 'A'.repeat(36), 'github_pat'), // somebody else's format
      github(live.token.toUpperCase()),             // not our exact format
      github(` ${live.token}`),
      github('')
    ]
    const res = await report(env, items)
    t.equal(res.statusCode, 200, res.text)
    t.same(res.verdicts, items.map(i => ({ token_hash: sha256(i.token ?? ''), token_type: i.type, label: 'false_positive' })))
    await Promise.all([env.sidecar.useEvents.flush(), replica.sidecar.useEvents.flush()])
    t.equal(await countAll(), eventsBefore, 'no event')
    t.equal(await revokedCount(), revokedBefore, 'nothing revoked')
    t.equal((await env.get('/api/scans', live.token)).statusCode, 200, 'the live token still works')
  })

  t.test('a batch: mixed items keep their order, the same token twice is handled once', async t => {
    const a = await env.mintPat()
    const b = await env.mintPat()
    keep(a.token)
    keep(b.token)
    const items = [github(a.token), github('nope'), github(b.token), github(a.token)]
    const res = await report(env, items)
    t.same(res.verdicts.map(v => v.label), ['true_positive', 'false_positive', 'true_positive', 'true_positive'])
    t.same(res.verdicts.map(v => v.token_hash), items.map(i => sha256(i.token ?? '')))
    t.equal((await eventRows(env, a.id, 'leak_reported')).length, 1, 'one record for a token reported twice in one batch')
    for (const p of [a, b]) t.equal((await env.get('/api/scans', p.token)).statusCode, 401)
  })

  t.test('bounded and validated', async t => {
    const tooMany = Array.from({ length: 101 }, (_, i) => github(`x${i}`))
    const big = await report(env, tooMany)
    t.equal(big.statusCode, 400, 'more than 100 items: 400')
    t.equal(JSON.parse(big.text).error, 'bad_request')
    t.equal((await report(env, Array.from({ length: 100 }, (_, i) => github(`x${i}`)))).statusCode, 200, '100 items: fine')
    t.equal((await report(env, [])).statusCode, 200)
    for (const body of [{ token: 'x' }, [{ type: 'x' }], [{ token: 1, type: 'x' }], [{ token: 'x'.repeat(4097), type: 'x' }], 'nope']) {
      t.equal((await report(env, body)).statusCode, 400, JSON.stringify(body).slice(0, 40))
    }
    const noAuth = await request(env.adminPort, '/admin/leaked-credentials', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '[]' })
    t.equal(noAuth.statusCode, 401, 'the admin token is required')
  })

  t.test('hostile free text is stored escaped-safe, never refused (the leak still gets revoked)', async t => {
    const pat = await env.mintPat()
    keep(pat.token)
    const res = await report(env, [{ token: pat.token, type: 'x\u202etype', url: `https://example.test/${pat.token}?\u0007`, source: 'content\u001b[2J' }])
    t.same(res.verdicts.map(v => v.label), ['true_positive'])
    t.equal((await env.get('/api/scans', pat.token)).statusCode, 401)
    const [leak] = await eventRows(env, pat.id, 'leak_reported')
    t.equal(leak?.detail?.url, `https://example.test/${pat.prefix}…?\u0007`, 'a token inside the URL is cut to its prefix')
  })

  t.test('no event holds a secret or a hash', async t => {
    await Promise.all([env.sidecar.useEvents.flush(), replica.sidecar.useEvents.flush()])
    await assertNoSecretsInEvents(t, env, secrets)
  })
})
