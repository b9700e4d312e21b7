import { randomUUID } from 'node:crypto'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import t from 'tap'
import { spawnCli, stop, waitFor, type Running } from '../helpers/cli-process.js'
import { startPgBouncer, skipUnless, type PgBouncer } from '../helpers/engines.js'
import { request, startUpstream } from '../helpers/http.js'
import { createRedisNamespace, createTestDatabase, REDIS_URL } from '../helpers/services.js'
import { ROOT, rememberSecret, runCli, startStack } from '../helpers/stack.js'

// DESIGN.md 8: the sidecar works through PgBouncer in transaction pooling mode,
// the version Debian ships included (1.18: no prepared-statement support at
// all), with DATABASE_POOLER=transaction; without the switch it says so.

const skip = skipUnless('pgbouncer')
const PREPARED = /prepared statement/i

interface Replica {
  run: Running
  port: number
  opsPort: number
}

function envFor (databaseUrl: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    DATABASE_URL: databaseUrl,
    DATABASE_POOLER: 'transaction',
    BCRYPT_COST: '4',
    LOG_LEVEL: 'warn',
    ...extra
  }
}

async function startReplica (t: { teardown(fn: () => unknown): void }, env: NodeJS.ProcessEnv): Promise<Replica> {
  const run = spawnCli(['serve'], { cwd: ROOT, env: { ...env, HOST: '127.0.0.1', PORT: '0', OPS_PORT: '0', ADMIN_PORT: '0' } })
  t.teardown(() => stop(run))
  const proxy = await waitFor(run, /proxy\s+http:\/\/127\.0\.0\.1:(\d+)/)
  const ops = await waitFor(run, /ops\s+http:\/\/127\.0\.0\.1:(\d+)/)
  return { run, port: Number(proxy[1]), opsPort: Number(ops[1]) }
}

async function sql (url: string, text: string, values: unknown[] = []): Promise<pg.QueryResult> {
  const c = new pg.Client({ connectionString: url })
  await c.connect()
  try {
    return await c.query(text, values)
  } finally {
    await c.end()
  }
}

async function cliJson (env: NodeJS.ProcessEnv, ...args: string[]): Promise<Record<string, string>> {
  const res = await runCli([...args, '--json'], env)
  if (res.code !== 0) throw new Error(`${args.join(' ')}: exit ${res.code}: ${res.stderr}`)
  return JSON.parse(res.stdout) as Record<string, string>
}

t.test('3 sidecar processes behind PgBouncer in transaction mode: no 503, no prepared-statement error, the CLI works', { skip }, async t => {
  const databaseUrl = await createTestDatabase(t)
  // Fewer server connections than the replicas' clients (3 x 3): every statement
  // may land on a server connection another client used last.
  const bouncer = await startPgBouncer(t, { poolMode: 'transaction', defaultPoolSize: 3 })
  t.comment(`PgBouncer ${bouncer.version}`)
  const upstream = await startUpstream(t)
  const dir = mkdtempSync(join(tmpdir(), 'hg-scale-'))
  const configFile = join(dir, 'config.yaml')
  writeFileSync(configFile, [
    'auth:',
    '  memoTtlSeconds: 0          # every request verifies: candidates, bcrypt and fresh state',
    '  negativeMemoTtlSeconds: 0',
    '  rateLimit: { maxFailures: 0, windowSeconds: 60 }',
    '  lastUsed: { flushIntervalMs: 200, minIntervalSeconds: 0 }',
    ''
  ].join('\n'))
  const env = envFor(bouncer.url(databaseUrl), { UPSTREAM_URL: upstream.url, REDIS_URL, REDIS_KEY_PREFIX: createRedisNamespace(t), CONFIG_FILE: configFile })

  // Three replicas start at once on an empty database: each migrates on start, through the pooler.
  const replicas = await Promise.all([0, 1, 2].map(async () => await startReplica(t, env)))

  const orgId = randomUUID()
  const users = [randomUUID(), randomUUID(), randomUUID()]
  await sql(databaseUrl, 'INSERT INTO orgs (id, slug, name) VALUES ($1::uuid, $1::text, $2)', [orgId, 'Scale org'])
  for (const [i, u] of users.entries()) {
    await sql(databaseUrl, 'INSERT INTO users (id, email) VALUES ($1::uuid, $1::text || \'@example.test\')', [u])
    await sql(databaseUrl, 'INSERT INTO org_memberships (org_id, user_id, role) VALUES ($1, $2, $3)', [orgId, u, i === 0 ? 'admin' : 'member'])
  }
  // The CLI through the same pooler: mint, list, revoke.
  const pats = await Promise.all(users.map(async (u, i) => await cliJson(env, 'token', 'create', '--user-id', u, '--org-id', orgId, '--name', `pat${i}`)))
  const key = await cliJson(env, 'api-key', 'create', '--org-id', orgId, '--created-by', users[0] ?? '', '--name', 'ci', '--role', 'viewer')
  const doomed = await cliJson(env, 'token', 'create', '--user-id', users[1] ?? '', '--org-id', orgId, '--name', 'doomed')
  for (const c of [...pats, key, doomed]) rememberSecret(c.token ?? '')
  const listed = await runCli(['token', 'list', '--user-id', users[1] ?? '', '--json'], env)
  t.equal(listed.code, 0, `token list: ${listed.stderr}`)
  t.equal((JSON.parse(listed.stdout) as unknown[]).length, 2)
  const revoked = await runCli(['token', 'revoke', doomed.id ?? ''], env)
  t.equal(revoked.code, 0, `token revoke: ${revoked.stderr}`)

  const valid = [...pats.map(p => p.token ?? ''), key.token ?? '']
  const refused = [doomed.token ?? '', (pats[0]?.token ?? '').slice(0, -4) + '0000']
  const statuses = new Map<string, number>()
  let wrong = 0
  let n = 0
  const total = 900
  await Promise.all(Array.from({ length: 12 }, async (_, worker) => {
    while (n < total) {
      const i = n++
      const replica = replicas[i % 3] as Replica
      const good = i % 5 !== 4
      const token = good ? valid[i % valid.length] : refused[i % refused.length]
      const res = await request(replica.port, `/api/scans?w=${worker}`, { headers: { 'x-api-key': token ?? '' } })
      const k = `${good ? 'valid' : 'refused'} ${res.statusCode}`
      statuses.set(k, (statuses.get(k) ?? 0) + 1)
      if (res.statusCode !== (good ? 200 : 401)) wrong++
    }
  }))
  t.comment(JSON.stringify(Object.fromEntries(statuses)))
  t.equal(wrong, 0, 'every valid credential passed, every refused one got 401: no 503')
  for (const r of replicas) {
    t.notMatch(r.run.out(), PREPARED, 'no prepared-statement error logged')
    const ready = await request(r.opsPort, '/readyz')
    t.equal(ready.statusCode, 200)
    t.equal(ready.json().postgres, 'ok')
  }
  // last_used_at writes (UPDATE in a transaction of their own) went through too.
  const { rows } = await sql(databaseUrl, 'SELECT count(*)::int AS n FROM personal_access_tokens WHERE last_used_at IS NOT NULL')
  t.equal(rows[0]?.n, pats.length, 'last_used_at recorded through the pooler')
})

t.test('without DATABASE_POOLER=transaction the sidecar and the CLI say what to set', { skip }, async t => {
  const databaseUrl = await createTestDatabase(t)
  const bouncer = await startPgBouncer(t, { poolMode: 'transaction' })
  const env = envFor(bouncer.url(databaseUrl), { DATABASE_POOLER: 'none', UPSTREAM_URL: 'http://127.0.0.1:9' })

  // PgBouncer refuses the statement_timeout startup parameter a direct connection gets.
  const run = spawnCli(['serve'], { cwd: ROOT, env: { ...env, HOST: '127.0.0.1', PORT: '0', OPS_PORT: '0', ADMIN_PORT: '0' } })
  t.teardown(() => stop(run))
  const code = await run.exited
  t.not(code, 0, 'serve refuses to start')
  t.match(run.out(), /DATABASE_POOLER=transaction/)
  t.match(run.out(), /unsupported startup parameter/)

  const cli = await runCli(['token', 'list', '--user-id', randomUUID()], env)
  t.not(cli.code, 0)
  t.match(cli.stderr, /DATABASE_POOLER=transaction/)
})

t.test('a pooler that passes startup parameters but swaps sessions: the prepared-statement errors name the switch', { skip }, async t => {
  const databaseUrl = await createTestDatabase(t)
  const bouncer: PgBouncer = await startPgBouncer(t, { poolMode: 'transaction', defaultPoolSize: 2, ignoreStartupParameters: ['extra_float_digits', 'statement_timeout'] })
  const url = bouncer.url(databaseUrl)
  const a = await startStack(t, { databaseUrl: url, config: { database: { pooler: 'none', poolSize: 3 }, auth: { memoTtlSeconds: 0 } } })
  const b = await startStack(t, { databaseUrl: url, redisKeyPrefix: a.redisKeyPrefix, config: { database: { pooler: 'none', poolSize: 3 }, auth: { memoTtlSeconds: 0 } } })
  const pat = await a.mintPat()
  const hinted = (): boolean => [...a.logs.lines, ...b.logs.lines].some(l => l.includes('DATABASE_POOLER=transaction') && PREPARED.test(l))
  let passedWrongly = 0
  for (let round = 0; round < 40 && !hinted(); round++) {
    const results = await Promise.all(Array.from({ length: 16 }, async (_, i) => await (i % 2 === 0 ? a : b).get('/api/scans', i % 4 === 3 ? pat.token.slice(0, -1) + (pat.token.endsWith('0') ? '1' : '0') : pat.token)))
    passedWrongly += results.filter((r, i) => i % 4 === 3 && r.statusCode === 200).length
  }
  t.ok(hinted(), 'an error log names the switch')
  t.equal(passedWrongly, 0, 'errors fail closed')
})
