import pg from 'pg'
import t from 'tap'
import { startPgBouncer, skipUnless } from '../helpers/engines.js'
import { LATEST_VERSION, migrate, schemaVersion } from '../../src/store/migrate.js'
import { MIGRATIONS } from '../../src/store/migrations/index.js'
import { createDb } from '../../src/store/postgres.js'
import { touchPats } from '../../src/store/queries.js'
import { createTestDatabase } from '../helpers/services.js'
import { runCli, startStack } from '../helpers/stack.js'

const skip = skipUnless('pgbouncer')
const LOCK_ID = 0x68675f73

async function withClient<T> (url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url })
  await c.connect()
  try {
    return await fn(c)
  } finally {
    await c.end()
  }
}

const advisoryLocks = async (url: string): Promise<number> => await withClient(url, async c =>
  (await c.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")).rows[0]?.n ?? -1)

const lockWaiters = async (url: string): Promise<number> => await withClient(url, async c =>
  (await c.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()")).rows[0]?.n ?? -1)

t.test('4 concurrent migrate runs through PgBouncer, 3 rounds: all succeed, no lock left behind', { skip }, async t => {
  const bouncer = await startPgBouncer(t, { poolMode: 'transaction', defaultPoolSize: 2 })
  for (let round = 0; round < 3; round++) {
    const databaseUrl = await createTestDatabase(t)
    const env = { PATH: process.env.PATH, HOME: process.env.HOME, DATABASE_URL: bouncer.url(databaseUrl), DATABASE_POOLER: 'transaction', LOG_LEVEL: 'warn' }
    const runs = await Promise.all([0, 1, 2, 3].map(async () => await runCli(['migrate'], env)))
    t.same(runs.map(r => r.code), [0, 0, 0, 0], `round ${round}: every run exits 0 ${runs.map(r => r.stderr).join('')}`)
    const applied = runs.flatMap(r => /applied migration\(s\) ([\d, ]+);/.exec(r.stdout)?.[1]?.split(', ').map(Number) ?? [])
    t.same(applied.sort((x, y) => x - y), MIGRATIONS.map(m => m.version), 'each migration applied once, by one of the runs')
    t.equal(await withClient(databaseUrl, async c => await schemaVersion(c)), LATEST_VERSION)
    t.equal(await advisoryLocks(databaseUrl), 0, 'no advisory lock held after the runs')
  }
})

t.test('MIGRATE_DATABASE_URL: migrate and migrate-on-start use it instead of DATABASE_URL', { skip }, async t => {
  const databaseUrl = await createTestDatabase(t)
  const res = await runCli(['migrate'], { PATH: process.env.PATH, DATABASE_URL: 'postgres://postgres@127.0.0.1:1/nowhere', MIGRATE_DATABASE_URL: databaseUrl })
  t.equal(res.code, 0, res.stderr)
  t.match(res.stdout, /applied migration\(s\) 1/)

  // The sidecar's own connections go through the pooler; its migrations do not.
  const other = await createTestDatabase(t)
  const bouncer = await startPgBouncer(t, { poolMode: 'transaction' })
  const env = await startStack(t, { databaseUrl: bouncer.url(other), config: { database: { pooler: 'transaction', migrateUrl: other } } })
  t.equal(await schemaVersion(env.sql), LATEST_VERSION)
  const pat = await env.mintPat()
  t.equal((await env.get('/api/scans', pat.token)).statusCode, 200)
})

t.test('a migration that cannot get its lock gives up on the server too, not only in the client', async t => {
  const url = await createTestDatabase(t)
  const pool = new pg.Pool({ connectionString: url, max: 2 })
  t.teardown(() => pool.end())
  await migrate(pool)
  const holder = new pg.Client({ connectionString: url })
  await holder.connect()
  t.teardown(() => holder.end())
  await holder.query('BEGIN')
  await holder.query('SELECT pg_advisory_xact_lock($1)', [LOCK_ID])

  const extra = [...MIGRATIONS, { version: 1000, name: 'test only', sql: 'CREATE TABLE hg_t_extra (x int)' }]
  const err = await migrate(pool, extra, { lockWaitMs: 300, attempts: 2 }).then(() => null, (e: unknown) => e as { code?: string })
  t.equal(err?.code, '55P03', 'lock_timeout on the server')
  t.equal(await lockWaiters(url), 0, 'no backend left waiting for the lock')

  await holder.query('COMMIT')
  t.same((await migrate(pool, extra)).applied, [1000], 'applies once the lock is free')
  t.equal(await advisoryLocks(url), 0)
})

t.test('a statement PostgreSQL is slow to answer is cancelled by the server, not left running', async t => {
  const url = await createTestDatabase(t)
  const db = createDb({ url, poolSize: 1, connectTimeoutMs: 5000, queryTimeoutMs: 200, applicationName: 'hg-t-timeout' })
  t.teardown(() => db.close())
  await t.rejects(db.query('hg_t_sleep', 'SELECT pg_sleep(5)', []), { code: 'HG_ERR_STORE_UNAVAILABLE' })
  const running = await withClient(url, async c => (await c.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'hg-t-timeout' AND state = 'active'")).rows[0]?.n)
  t.equal(running, 0, 'statement_timeout stopped it on the server')
})

t.test('through a transaction pooler, a write waiting on a row lock is bounded on the server (SET LOCAL)', { skip }, async t => {
  const url = await createTestDatabase(t)
  const env = await startStack(t, { databaseUrl: url, listen: false })
  const pat = await env.mintPat()
  const bouncer = await startPgBouncer(t, { poolMode: 'transaction' })
  const db = createDb({ url: bouncer.url(url), pooler: 'transaction', poolSize: 1, connectTimeoutMs: 5000, queryTimeoutMs: 300 })
  t.teardown(() => db.close())
  const holder = new pg.Client({ connectionString: url })
  await holder.connect()
  t.teardown(() => holder.end())
  await holder.query('BEGIN')
  await holder.query('SELECT 1 FROM personal_access_tokens WHERE id = $1 FOR UPDATE', [pat.id])

  await t.rejects(touchPats(db, [pat.id], new Date()), { code: 'HG_ERR_STORE_UNAVAILABLE' })
  t.equal(await lockWaiters(url), 0, 'the UPDATE is not still queued behind the lock')
  await holder.query('ROLLBACK')
  await touchPats(db, [pat.id], new Date())
  const { rows } = await env.sql.query<{ n: number }>('SELECT count(*)::int AS n FROM personal_access_tokens WHERE last_used_at IS NOT NULL')
  t.equal(rows[0]?.n, 1, 'and goes through once the lock is gone')
})
