import t from 'tap'
import { startStack } from '../helpers/stack.js'

t.test('token create / list / revoke through the built CLI', async t => {
  const env = await startStack(t)
  const orgId = await env.createOrg()
  const userId = await env.createUser()
  await env.addMember(orgId, userId, 'admin')

  const created = await env.cli('token', 'create', '--user-id', userId, '--org-id', orgId, '--name', 'ci', '--expires-in', '7d', '--permissions', 'scans:read,reports:read', '--json')
  t.equal(created.code, 0, created.stderr)
  const obj = JSON.parse(created.stdout) as { id: string, token: string, prefix: string, name: string, expiresAt: string, permissions: string[] }
  t.same(Object.keys(obj).sort(), ['expiresAt', 'id', 'name', 'permissions', 'prefix', 'token'])
  t.match(obj.token, /^hg_pat_[0-9a-f]{48}$/)
  t.equal(obj.prefix, obj.token.slice(0, 10))
  t.same(obj.permissions, ['reports:read', 'scans:read'])
  const days = (Date.parse(obj.expiresAt) - Date.now()) / 86_400_000
  t.ok(days > 6.9 && days <= 7, `expires in ${days} days`)
  const row = await env.sql.query<{ secret_hash: string, prefix: string }>('SELECT secret_hash, prefix FROM personal_access_tokens WHERE id = $1', [obj.id])
  t.match(row.rows[0]?.secret_hash, /^\$2[ab]\$04\$/, 'bcrypt hash at the configured cost')
  t.notMatch(row.rows[0]?.secret_hash, obj.token.slice(10))

  const res = await env.get('/api/scans', obj.token)
  t.equal(res.statusCode, 200)

  const human = await env.cli('token', 'create', '--user-id', userId, '--org-id', orgId, '--name', 'plain')
  t.equal(human.code, 0, human.stderr)
  t.match(human.stdout, /shown this once/)
  t.match(human.stdout, /hg_pat_[0-9a-f]{48}/)
  t.match(human.stdout, /expires\s+\d{4}-/, 'default lifetime applied')

  const list = await env.cli('token', 'list', '--user-id', userId, '--json')
  t.equal(list.code, 0)
  const rows = JSON.parse(list.stdout) as Array<Record<string, unknown>>
  t.equal(rows.length, 2)
  t.notMatch(list.stdout, /hg_pat_[0-9a-f]{48}|secret|\$2[ab]\$/, 'no secret and no hash in a list')

  const revoked = await env.cli('token', 'revoke', obj.id)
  t.equal(revoked.code, 0)
  t.equal((await env.get('/api/scans', obj.token)).statusCode, 401)
  const listed = await env.cli('token', 'list', '--user-id', userId)
  t.match(listed.stdout, /revoked/)
})

t.test('refusals exit non-zero with the reason on stderr', async t => {
  const env = await startStack(t)
  const orgId = await env.createOrg()
  const active = await env.createUser()
  await env.addMember(orgId, active, 'viewer')
  const suspended = await env.createUser('suspended')
  await env.addMember(orgId, suspended, 'member')
  const outsider = await env.createUser()
  const base = ['token', 'create', '--org-id', orgId, '--name', 'x']
  const cases: Array<[string[], RegExp]> = [
    [[...base, '--user-id', suspended], /suspended, not active/],
    [[...base, '--user-id', outsider], /not a member/],
    [[...base, '--user-id', '00000000-0000-0000-0000-000000000000'], /no such user/],
    [[...base, '--user-id', 'not-a-uuid'], /user-id must be a UUID/],
    [[...base, '--user-id', active, '--permissions', 'scans:fly'], /unknown permission\(s\): scans:fly/],
    [[...base, '--user-id', active, '--permissions', 'scans:write'], /beyond the user's current role viewer: scans:write/],
    [[...base, '--user-id', active, '--expires-at', '2001-01-01T00:00:00Z'], /in the past/],
    [[...base, '--user-id', active, '--expires-in', '3y'], /maximum lifetime of 365 days/],
    [[...base, '--user-id', active, '--expires-in', 'soon'], /expires-in must look like/],
    [[...base, '--user-id', active, '--expires-in', '1d', '--no-expiry'], /at most one/],
    [['token', 'revoke', '00000000-0000-0000-0000-000000000000'], /no such token/],
    [['token', 'create', '--org-id', orgId], /required option/]
  ]
  const results = await Promise.all(cases.map(([args]) => env.cli(...args)))
  for (const [i, [args, re]] of cases.entries()) {
    const res = results[i] as { code: number, stdout: string, stderr: string }
    t.not(res.code, 0, args.join(' '))
    t.match(res.stderr, re, args.join(' '))
    t.notMatch(res.stdout, /hg_pat_/, 'no token printed')
  }
  const count = await env.sql.query<{ n: number }>('SELECT count(*)::int AS n FROM personal_access_tokens')
  t.equal(count.rows[0]?.n, 0, 'nothing minted')

  const noExpiry = await env.cli(...base, '--user-id', active, '--no-expiry', '--json')
  t.equal(noExpiry.code, 0)
  t.equal((JSON.parse(noExpiry.stdout) as { expiresAt: null }).expiresAt, null)
  t.match(noExpiry.stderr, /never expires/)
})

t.test('migrate is idempotent', async t => {
  const env = await startStack(t)
  const res = await env.cli('migrate')
  t.equal(res.code, 0)
  t.match(res.stdout, /up to date \(version \d+\)/)
})
