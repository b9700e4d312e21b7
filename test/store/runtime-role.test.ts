import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import pg from 'pg'
import t from 'tap'
import { createSidecar } from '../../src/app.js'
import { createLogger } from '../../src/logger.js'
import { request } from '../helpers/http.js'
import { captureLogs, ROOT, startStack, testConfig } from '../helpers/stack.js'

// Issue 20: with migrateOnStart false (the chart's default: its Job migrates), the
// sidecar's own role needs no DDL rights. The grants are the ones docs/kubernetes.md gives.

const grantsSql = (): string => {
  const text = readFileSync(join(ROOT, 'docs', 'kubernetes.md'), 'utf8')
  const block = /```sql\n([\s\S]*?)```/.exec(text)?.[1]
  if (block === undefined) throw new Error('no sql block in docs/kubernetes.md')
  return block
}

t.test('a runtime role with the documented grants serves, records use and mints; it cannot migrate', async t => {
  const owner = await startStack(t) // migrated by the owner (the Job's role)
  const pat = await owner.mintPat({ role: 'member' })
  await owner.sidecar.close()

  const role = `hg_t_rt_${randomBytes(4).toString('hex')}`
  const password = randomBytes(12).toString('hex')
  const sql = grantsSql().replaceAll('hg_sidecar_runtime', role).replace("'CHANGE-ME'", `'${password}'`)
  t.match(sql, /GRANT/, 'the documented grants')
  // PostgreSQL before 15 lets every role create in public; the test role must not be able to.
  await owner.sql.query('REVOKE CREATE ON SCHEMA public FROM PUBLIC')
  await owner.sql.query(sql)
  t.teardown(async () => {
    const admin = new pg.Client({ connectionString: owner.databaseUrl })
    await admin.connect()
    try {
      await admin.query(`DROP OWNED BY ${role}`)
    } catch {} finally {
      await admin.end()
    }
    const rootUrl = new URL(owner.databaseUrl)
    rootUrl.pathname = '/postgres'
    const root = new pg.Client({ connectionString: rootUrl.toString() })
    await root.connect()
    try {
      await root.query(`DROP ROLE IF EXISTS ${role}`)
    } finally {
      await root.end()
    }
  })
  const u = new URL(owner.databaseUrl)
  u.username = role
  u.password = password
  const runtimeUrl = u.toString()

  const probe = new pg.Client({ connectionString: runtimeUrl })
  await probe.connect()
  await t.rejects(probe.query('CREATE TABLE hg_t_ddl_probe (id int)'), /permission denied/, 'the role has no DDL rights')
  await probe.end()

  const base = { databaseUrl: runtimeUrl, redisUrl: null, redisKeyPrefix: owner.redisKeyPrefix, upstreamUrl: owner.upstream.url }
  const refused = createSidecar(testConfig(base, { database: { migrateOnStart: true } }), { logger: createLogger('silent') })
  await t.rejects(refused, /permission denied/, 'migrateOnStart with this role fails at start, as it should')

  const { stream } = captureLogs()
  const adminToken = 'test-admin-token-not-a-secret-0002'
  const config = testConfig(base, { database: { migrateOnStart: false }, adminToken, auth: { lastUsed: { flushIntervalMs: 60_000, minIntervalSeconds: 0 } } })
  const sidecar = await createSidecar(config, { logger: createLogger('info', stream) })
  t.teardown(() => sidecar.close())
  const { port, opsPort, adminPort } = await sidecar.listen()

  const ready = await request(opsPort, '/readyz')
  t.equal(ready.statusCode, 200, `ready: ${ready.text}`)
  const res = await request(port, '/api/scans', { headers: { 'x-api-key': pat.token } })
  t.equal(res.statusCode, 200, 'a token is verified (SELECT)')
  const minted = await request(adminPort, '/admin/personal-access-tokens', {
    method: 'POST',
    headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ userId: pat.userId, orgId: pat.orgId, name: 'by the runtime role' })
  })
  t.equal(minted.statusCode, 201, `a token is minted (INSERT): ${minted.text}`)
  const revoked = await request(adminPort, `/admin/personal-access-tokens/${minted.json<{ id: string }>().id}`, { method: 'DELETE', headers: { authorization: `Bearer ${adminToken}` } })
  t.ok(revoked.statusCode >= 200 && revoked.statusCode < 300, `and revoked (UPDATE): ${revoked.statusCode}`)

  await sidecar.close() // flushes last_used_at
  const { rows } = await owner.sql.query<{ last_used_at: Date | null }>('SELECT last_used_at FROM personal_access_tokens WHERE id = $1', [pat.id])
  t.ok(rows[0]?.last_used_at instanceof Date, 'last_used_at written (UPDATE)')
})
