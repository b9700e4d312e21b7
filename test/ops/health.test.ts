import t from 'tap'
import { createHealth } from '../../src/ops/health.js'
import { request } from '../helpers/http.js'
import { startStack } from '../helpers/stack.js'

t.test('readiness: one statement on one connection, reused for a second, shared by concurrent probes', async t => {
  let now = 0
  let queries = 0
  let fail = false
  const pool = {
    async query () {
      queries++
      await new Promise(resolve => setImmediate(resolve))
      if (fail) throw new Error('connection refused')
      return { rows: [{ v: 1_000_000 }] }
    }
  }
  const health = createHealth({ db: { pool } as never, redis: () => 'ok', now: () => now })
  const reports = await Promise.all(Array.from({ length: 10 }, async () => await health.check()))
  t.equal(queries, 1, '10 concurrent probes, one query')
  t.same(reports[0], { postgres: 'ok', migrated: true, redis: 'ok' })
  now = 999
  await health.check()
  t.equal(queries, 1, 'reused within the second')
  now = 1000
  fail = true
  t.same(await health.check(), { postgres: 'down', migrated: false, redis: 'ok' })
  t.equal(queries, 2, 'asked again after a second')
})

t.test('an idle sidecar probed from many sides holds one PostgreSQL connection', async t => {
  const env = await startStack(t)
  const probes = await Promise.all(Array.from({ length: 20 }, async () => await request(env.opsPort, '/readyz')))
  t.same([...new Set(probes.map(p => p.statusCode))], [200])
  t.equal(env.sidecar.db.stats().total, 1)
})
