import t from 'tap'
import { ConfigError, loadConfig } from '../../src/config/load.js'
import { startStack, type Stack } from '../helpers/stack.js'

async function seed (env: Stack, daysAgo: number, count: number): Promise<void> {
  await env.sql.query(`
    INSERT INTO credential_events (at, kind, credential_type, credential_id, prefix)
    SELECT now() - make_interval(days => $1::int), 'used_after_revoke', 'pat', gen_random_uuid(), 'hg_pat_abc'
    FROM generate_series(1, $2::int)`, [daysAgo, count])
}

async function countOlderThan (env: Stack, days: number): Promise<number> {
  const res = await env.sql.query<{ n: number }>('SELECT count(*)::int AS n FROM credential_events WHERE at < now() - make_interval(days => $1::int)', [days])
  return res.rows[0]?.n ?? 0
}

async function countAll (env: Stack): Promise<number> {
  return (await env.sql.query<{ n: number }>('SELECT count(*)::int AS n FROM credential_events')).rows[0]?.n ?? 0
}

t.test('events older than the retention are deleted in the background, in small batches', async t => {
  const env = await startStack(t, { config: { audit: { retentionDays: 90, retentionSweepIntervalSeconds: 1 } } })
  const statements: string[] = []
  env.sidecar.db.onQuery(name => { if (name === 'hg_events_expire') statements.push(name) })
  await seed(env, 400, 700)
  await seed(env, 91, 500)
  await seed(env, 89, 10)
  await seed(env, 0, 5)

  // No call from the test: the sidecar's own timer sweeps.
  const end = Date.now() + 30_000
  while (Date.now() < end && await countOlderThan(env, 90) > 0) await new Promise(resolve => setTimeout(resolve, 200))
  t.equal(await countOlderThan(env, 90), 0, 'expired events deleted')
  t.equal(await countAll(env), 15, 'younger ones kept')
  t.ok(statements.length >= 3, `1,200 rows in batches of 500: ${statements.length} DELETE statements`)

  // And again on the next interval.
  await seed(env, 120, 3)
  const end2 = Date.now() + 30_000
  while (Date.now() < end2 && await countOlderThan(env, 90) > 0) await new Promise(resolve => setTimeout(resolve, 200))
  t.equal(await countOlderThan(env, 90), 0, 'swept again on its interval')

  await env.sidecar.close()
  t.equal(await env.sidecar.retention.sweep(), 0, 'after close nothing runs')
})

t.test('retentionDays 0 keeps events forever', async t => {
  const env = await startStack(t, { config: { audit: { retentionDays: 0, retentionSweepIntervalSeconds: 1 } } })
  const statements: string[] = []
  env.sidecar.db.onQuery(name => { if (name === 'hg_events_expire') statements.push(name) })
  await seed(env, 5000, 3)
  t.equal(await env.sidecar.retention.sweep(), 0)
  await new Promise(resolve => setTimeout(resolve, 2500))
  t.equal(await countAll(env), 3)
  t.equal(statements.length, 0, 'no DELETE is ever sent')
})

t.test('a sweep returns what it deleted; concurrent sweeps share one run', async t => {
  const env = await startStack(t, { config: { audit: { retentionDays: 30, retentionSweepIntervalSeconds: 3600 } } })
  await seed(env, 31, 1100)
  await seed(env, 29, 2)
  const [a, b] = await Promise.all([env.sidecar.retention.sweep(), env.sidecar.retention.sweep()])
  t.equal(a, 1100)
  t.equal(b, 1100, 'the second call joined the first')
  t.equal(await countAll(env), 2)
})

t.test('AUDIT_RETENTION_DAYS', async t => {
  t.equal(loadConfig({ env: {} }).audit.retentionDays, 90, 'default 90 days')
  t.equal(loadConfig({ env: { AUDIT_RETENTION_DAYS: '0' } }).audit.retentionDays, 0)
  t.equal(loadConfig({ env: { AUDIT_RETENTION_DAYS: '365' } }).audit.retentionDays, 365)
  t.throws(() => loadConfig({ env: { AUDIT_RETENTION_DAYS: '-1' } }), ConfigError)
  t.throws(() => loadConfig({ env: { AUDIT_RETENTION_DAYS: '-1' } }), /audit\.retentionDays \(AUDIT_RETENTION_DAYS\)/)
  t.throws(() => loadConfig({ overrides: { audit: { useEvents: { minIntervalSeconds: 0 } } } }), /audit\.useEvents\.minIntervalSeconds/)
})
