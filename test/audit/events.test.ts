import t from 'tap'
import { request } from '../helpers/http.js'
import { ADMIN_TOKEN, assertNoSecretsInEvents, countEvents, eventRows } from '../helpers/audit.js'
import { rememberSecret, startStack, type Stack } from '../helpers/stack.js'

interface ApiEvent {
  id: string
  at: string
  kind: string
  credentialType: string
  credentialId: string | null
  prefix: string | null
  orgId: string | null
  userId: string | null
  actorType: string | null
  actorId: string | null
  clientIp: string | null
  requestId: string | null
  detail: Record<string, unknown> | null
}

const admin = { authorization: `Bearer ${ADMIN_TOKEN}` }
const json = { ...admin, 'content-type': 'application/json' }
// Control characters, an ANSI escape and bidi overrides: what a terminal must never receive raw.
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const RAW_UNSAFE = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/

async function events (env: Stack, query: string): Promise<ApiEvent[]> {
  const res = await request(env.adminPort, `/admin/credential-events${query}`, { headers: admin })
  if (res.statusCode !== 200) throw new Error(`GET /admin/credential-events${query}: ${res.statusCode} ${res.text}`)
  return res.json<ApiEvent[]>()
}

t.test('credential events: who created and revoked what, uses after revoke/expiry/suspension, the API and the CLI', async t => {
  const env = await startStack(t, { config: { adminToken: ADMIN_TOKEN } })
  const orgId = await env.createOrg()
  const userId = await env.createUser()
  await env.addMember(orgId, userId, 'admin')
  const secrets: string[] = []
  const keep = (token: string): string => {
    rememberSecret(token)
    secrets.push(token)
    return token
  }

  t.test('created and revoked, with the actor of each path', async t => {
    // Admin API, with the acting user and the request id the app passes on.
    const made = await request(env.adminPort, '/admin/personal-access-tokens', {
      method: 'POST',
      headers: { ...json, 'x-actor-id': 'settings-user-42', 'x-request-id': 'req-create-1' },
      body: JSON.stringify({ userId, orgId, name: 'settings page', permissions: ['scans:read', 'tokens:manage', 'api-keys:manage'] })
    })
    t.equal(made.statusCode, 201)
    const a = made.json<{ id: string, token: string, prefix: string }>()
    keep(a.token)
    const [created] = await eventRows(env, a.id)
    t.match(created, {
      kind: 'created',
      credential_type: 'pat',
      prefix: a.prefix,
      org_id: orgId,
      user_id: userId,
      actor_type: 'admin_api',
      actor_id: 'settings-user-42',
      client_ip: '127.0.0.1',
      request_id: 'req-create-1',
      detail: { name: 'settings page', permissions: ['api-keys:manage', 'scans:read', 'tokens:manage'] }
    })

    const badActor = await request(env.adminPort, '/admin/personal-access-tokens', {
      method: 'POST', headers: { ...json, 'x-actor-id': 'a\u0080b' }, body: JSON.stringify({ userId, orgId, name: 'x' })
    })
    t.equal(badActor.statusCode, 400, 'an X-Actor-Id that is not printable ASCII is refused')

    // CLI: the operating-system user is the actor.
    const cli = await env.cli('token', 'create', '--user-id', userId, '--org-id', orgId, '--name', 'cli token', '--json')
    t.equal(cli.code, 0, cli.stderr)
    const b = JSON.parse(cli.stdout) as { id: string, token: string }
    keep(b.token)
    t.match((await eventRows(env, b.id))[0], { kind: 'created', actor_type: 'cli', actor_id: /.+/, client_ip: null })

    const keyRes = await request(env.adminPort, '/admin/api-keys', {
      method: 'POST', headers: { ...json, 'x-actor-id': 'settings-user-42' }, body: JSON.stringify({ orgId, createdBy: userId, name: 'ci', role: 'member' })
    })
    t.equal(keyRes.statusCode, 201)
    const k = keyRes.json<{ id: string, token: string, prefix: string }>()
    keep(k.token)
    t.match((await eventRows(env, k.id))[0], { kind: 'created', credential_type: 'api_key', org_id: orgId, user_id: null, actor_type: 'admin_api', detail: { role: 'member', createdBy: userId } })

    // Self-service: the calling credential is the actor.
    const del = await env.request(`/api/personal-access-tokens/${b.id}`, { method: 'DELETE', headers: { 'x-api-key': a.token, 'x-request-id': 'req-self-1' } })
    t.equal(del.statusCode, 204)
    t.match((await eventRows(env, b.id, 'revoked'))[0], {
      actor_type: 'self_service',
      actor_id: a.id,
      client_ip: '127.0.0.1',
      request_id: 'req-self-1',
      org_id: orgId,
      user_id: userId,
      detail: { actorCredentialType: 'pat', actorUserId: userId }
    })
    const delKey = await env.request(`/api/api-keys/${k.id}`, { method: 'DELETE', headers: { 'x-api-key': a.token } })
    t.equal(delKey.statusCode, 204)
    t.match((await eventRows(env, k.id, 'revoked'))[0], { credential_type: 'api_key', actor_type: 'self_service', actor_id: a.id })

    // The sidecar itself (the test's service call) and the CLI's revoke.
    const c = await env.mintPat({ userId, orgId })
    keep(c.token)
    t.match((await eventRows(env, c.id))[0], { kind: 'created', actor_type: 'system', actor_id: null })
    const revoke = await env.cli('token', 'revoke', c.id)
    t.equal(revoke.code, 0, revoke.stderr)
    t.match((await eventRows(env, c.id, 'revoked'))[0], { actor_type: 'cli', actor_id: /.+/ })

    // Admin API revoke, twice: revoked once, recorded once.
    for (let i = 0; i < 2; i++) {
      const res = await request(env.adminPort, `/admin/personal-access-tokens/${a.id}`, { method: 'DELETE', headers: { ...admin, 'x-actor-id': 'settings-user-42' } })
      t.equal(res.statusCode, 204)
    }
    t.equal((await env.cli('token', 'revoke', c.id)).code, 0, 'a second CLI revoke succeeds')
    const revokedA = await eventRows(env, a.id, 'revoked')
    t.equal(revokedA.length, 1, 'one revoked event however often it is revoked')
    t.match(revokedA[0], { actor_type: 'admin_api', actor_id: 'settings-user-42' })
    t.equal((await eventRows(env, c.id, 'revoked')).length, 1)
    const stored = await env.sql.query<{ revoked_at: Date }>('SELECT revoked_at FROM personal_access_tokens WHERE id = $1', [a.id])
    t.equal(revokedA[0]?.at.getTime(), stored.rows[0]?.revoked_at.getTime(), 'the event is dated when the revocation took effect')

    // Newest first through the API, every contract field present.
    const list = await events(env, `?credentialId=${a.id}`)
    t.same(list.map(e => e.kind), ['revoked', 'created'])
    t.same(Object.keys(list[0] ?? {}).sort(), ['actorId', 'actorType', 'at', 'clientIp', 'credentialId', 'credentialType', 'detail', 'id', 'kind', 'orgId', 'prefix', 'requestId', 'userId'])
  })

  t.test('refused uses of known credentials: one event per kind, with address and request id', async t => {
    const revoked = await env.mintPat({ userId, orgId })
    const expired = await env.mintPat({ userId, orgId })
    const suspendedUser = await env.createUser()
    await env.addMember(orgId, suspendedUser, 'member')
    const suspended = await env.mintPat({ userId: suspendedUser, orgId })
    const removedUser = await env.createUser()
    await env.addMember(orgId, removedUser, 'member')
    const removed = await env.mintPat({ userId: removedUser, orgId })
    const key = await env.service.createApiKey({ orgId, createdBy: userId, name: 'k', role: 'viewer' })
    const oldKey = await env.service.createApiKey({ orgId, createdBy: userId, name: 'k2', role: 'viewer' })
    for (const s of [revoked.token, expired.token, suspended.token, removed.token, key.token, oldKey.token]) keep(s)
    for (const p of [revoked, expired, suspended, removed]) t.equal((await env.get('/api/scans', p.token)).statusCode, 200, 'works before')

    await env.service.revokePat(revoked.id)
    await env.sql.query("UPDATE personal_access_tokens SET expires_at = now() - interval '1 minute' WHERE id = $1", [expired.id])
    await env.sql.query("UPDATE users SET status = 'suspended' WHERE id = $1", [suspendedUser])
    await env.sql.query('DELETE FROM org_memberships WHERE user_id = $1', [removedUser])
    await env.service.revokeApiKey(key.id)
    await env.sql.query("UPDATE api_keys SET expires_at = now() - interval '1 minute' WHERE id = $1", [oldKey.id])

    const cases = [
      { cred: revoked, kind: 'used_after_revoke', status: 401, type: 'pat', user: userId },
      { cred: expired, kind: 'used_after_expiry', status: 401, type: 'pat', user: userId },
      { cred: suspended, kind: 'used_while_suspended', status: 401, type: 'pat', user: suspendedUser },
      { cred: removed, kind: 'used_after_removal', status: 401, type: 'pat', user: removedUser },
      { cred: key, kind: 'used_after_revoke', status: 401, type: 'api_key', user: null },
      { cred: oldKey, kind: 'used_after_expiry', status: 401, type: 'api_key', user: null }
    ]
    for (const [i, c] of cases.entries()) {
      for (let n = 0; n < 3; n++) {
        const res = await env.get('/api/scans', c.cred.token, { 'x-request-id': `use-${i}-${n}` })
        t.equal(res.statusCode, c.status, c.kind)
      }
    }
    await env.sidecar.useEvents.flush()
    for (const [i, c] of cases.entries()) {
      const rows = await eventRows(env, c.cred.id, c.kind)
      t.equal(rows.length, 1, `${c.kind} (${c.type}): three uses, one event`)
      t.match(rows[0], {
        credential_type: c.type,
        prefix: c.cred.prefix,
        org_id: orgId,
        user_id: c.user,
        actor_type: null,
        actor_id: null,
        client_ip: '127.0.0.1',
        request_id: `use-${i}-0`,
        detail: null
      }, c.kind)
    }

    // Only a verified secret makes an event: a guess under a revoked token's prefix, an
    // unknown key or a malformed credential records nothing.
    const before = await countEvents(env)
    const guess = revoked.token.slice(0, -1) + (revoked.token.endsWith('0') ? '1' : '0')
    const unknownKey = 'hg_key_' + '0'.repeat(48)
    for (const cred of [guess, unknownKey, 'hg_pat_nope']) t.equal((await env.get('/api/scans', cred)).statusCode, 401)
    await env.sidecar.useEvents.flush()
    t.equal(await countEvents(env), before, 'no event for a credential whose secret did not verify')
  })

  t.test('GET /admin/credential-events: filters, order, paging, validation, OpenAPI', async t => {
    const all = await events(env, '?limit=1000')
    t.ok(all.length >= 15, `${all.length} events`)
    for (let i = 1; i < all.length; i++) {
      const [prev, cur] = [all[i - 1] as ApiEvent, all[i] as ApiEvent]
      t.ok(prev.at > cur.at || (prev.at === cur.at && BigInt(prev.id) > BigInt(cur.id)), 'newest first')
    }
    t.ok((await events(env, `?orgId=${orgId}&limit=1000`)).length === all.length, 'all of them are this org\'s')
    const mine = await events(env, `?userId=${userId}&limit=1000`)
    t.ok(mine.length > 0 && mine.every(e => e.userId === userId))
    const usedAfterRevoke = await events(env, '?kind=used_after_revoke')
    t.same(usedAfterRevoke.map(e => e.credentialType).sort(), ['api_key', 'pat'])
    const revokes = await events(env, `?kind=revoked&orgId=${orgId}&userId=${userId}`)
    t.ok(revokes.length >= 3 && revokes.every(e => e.kind === 'revoked' && e.userId === userId))
    t.same(await events(env, `?since=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`), [], 'since in the future: none')
    const middle = all[Math.floor(all.length / 2)] as ApiEvent
    const since = await events(env, `?since=${encodeURIComponent(middle.at)}&limit=1000`)
    t.ok(since.length > 0 && since.every(e => e.at >= middle.at), 'since is inclusive')

    const pages: ApiEvent[] = []
    let cursor = ''
    for (let i = 0; i < 100; i++) {
      const page = await events(env, `?limit=4${cursor}`)
      pages.push(...page)
      if (page.length < 4) break
      cursor = `&before=${(page[page.length - 1] as ApiEvent).id}`
    }
    t.same(pages.map(e => e.id), all.map(e => e.id), 'paging with before walks every event once, in order')
    t.equal((await events(env, '?limit=1')).length, 1)

    for (const q of ['?limit=0', '?limit=1001', '?limit=abc', '?kind=bogus', '?credentialId=nope', '?since=yesterday', '?before=x', '?unknown=1']) {
      const res = await request(env.adminPort, `/admin/credential-events${q}`, { headers: admin })
      t.equal(res.statusCode, 400, q)
      t.equal(res.json().error, 'bad_request', q)
    }
    t.equal((await request(env.adminPort, '/admin/credential-events')).statusCode, 401, 'the admin token is required')

    const spec = (await request(env.adminPort, '/admin/openapi.json', { headers: admin })).json<{ paths: Record<string, Record<string, { parameters?: Array<{ name: string }> }>> }>()
    const params = (spec.paths['/admin/credential-events']?.get?.parameters ?? []).map(p => p.name).sort()
    t.same(params, ['before', 'credentialId', 'kind', 'limit', 'orgId', 'since', 'userId'])
    t.ok(spec.paths['/admin/leaked-credentials']?.post, 'the leak endpoint is documented')
  })

  t.test('hg-sidecar events list: filters, JSON, and stored text printed escaped', async t => {
    const any = (await events(env, `?kind=revoked&userId=${userId}`))[0] as ApiEvent
    const credId = any.credentialId ?? ''
    const viaApi = await events(env, `?credentialId=${credId}`)
    const asJson = await env.cli('events', 'list', '--credential-id', credId, '--json')
    t.equal(asJson.code, 0, asJson.stderr)
    t.same(JSON.parse(asJson.stdout), viaApi, 'the CLI and the API agree')
    const filtered = await env.cli('events', 'list', '--org-id', orgId, '--user-id', userId, '--kind', 'created', '--since', '1h', '--limit', '2', '--json')
    t.equal(filtered.code, 0, filtered.stderr)
    const rows = JSON.parse(filtered.stdout) as ApiEvent[]
    t.equal(rows.length, 2)
    t.ok(rows.every(e => e.kind === 'created' && e.userId === userId))
    const text = await env.cli('events', 'list', '--credential-id', credId)
    t.equal(text.code, 0, text.stderr)
    t.equal(text.stdout.trim().split('\n').length, viaApi.length, 'one line per event')
    t.match(text.stdout, /revoked/)
    t.match((await env.cli('events', 'list', '--credential-id', '00000000-0000-0000-0000-000000000000')).stdout, /no events/)
    for (const bad of [['--kind', 'bogus'], ['--limit', '0'], ['--since', 'yesterday'], ['--credential-id', 'nope']]) {
      const res = await env.cli('events', 'list', ...bad)
      t.not(res.code, 0, bad.join(' '))
      t.match(res.stderr, /kind must be one of|limit must be|since must be|credential-id must be a UUID/, bad.join(' '))
    }

    // A row written by something else (another tool, an older version) with hostile text.
    const hostile = 'evil\u202e\u0007\u001b[2J\u009bname\u2066'
    await env.sql.query(`
      INSERT INTO credential_events (kind, credential_type, credential_id, prefix, actor_type, actor_id, request_id, detail)
      VALUES ('revoked', 'pat', '11111111-1111-4111-8111-111111111111', 'hg_pat_abc', 'admin_api', $1, $1, jsonb_build_object('note', $1::text))`, [hostile])
    const shown = await env.cli('events', 'list', '--credential-id', '11111111-1111-4111-8111-111111111111')
    t.equal(shown.code, 0, shown.stderr)
    t.notMatch(shown.stdout, RAW_UNSAFE, 'no raw control or bidi character in the text output')
    t.match(shown.stdout, /evil\\u202e\\u0007\\u001b\[2J\\u009bname\\u2066/, 'shown as visible escapes')
    const shownJson = await env.cli('events', 'list', '--credential-id', '11111111-1111-4111-8111-111111111111', '--json')
    t.notMatch(shownJson.stdout, RAW_UNSAFE, 'nor in the JSON output')
    const parsed = JSON.parse(shownJson.stdout) as ApiEvent[]
    t.equal(parsed[0]?.actorId, hostile, 'the JSON still parses back to the stored text')
    t.equal(parsed[0]?.detail?.note, hostile)
    await env.sql.query("DELETE FROM credential_events WHERE credential_id = '11111111-1111-4111-8111-111111111111'")
  })

  t.test('a name with a credential pasted into it is stored masked', async t => {
    const pasted = 'hg_pat_' + '0123456789abcdef'.repeat(3)
    const res = await request(env.adminPort, '/admin/personal-access-tokens', { method: 'POST', headers: json, body: JSON.stringify({ userId, orgId, name: `oops ${pasted}` }) })
    t.equal(res.statusCode, 201)
    const made = res.json<{ id: string, token: string }>()
    keep(made.token)
    const [row] = await eventRows(env, made.id)
    t.equal(row?.detail?.name, 'oops hg_pat_012…')
  })

  t.test('no event holds a secret, a hash or anything credential-shaped', async t => {
    await env.sidecar.useEvents.flush()
    await assertNoSecretsInEvents(t, env, secrets)
  })
})
