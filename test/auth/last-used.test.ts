import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { startStack } from '../helpers/stack.js'

t.test('last_used_at: written off the request path, at most once per interval per token, flushed on close', async t => {
  const env = await startStack(t, { config: { auth: { lastUsed: { flushIntervalMs: 200, minIntervalSeconds: 60 } } } })
  const pat = await env.mintPat()
  const other = await env.mintPat()
  const updates: string[] = []
  env.sidecar.db.onQuery(name => { if (name === 'hg_pat_touch') updates.push(name) })
  // Credentials written, summed over every UPDATE (each UPDATE carries a batch of ids).
  const written = async (): Promise<number> => {
    const m = (await env.sidecar.metrics.registry.getMetricsAsJSON()).find(x => x.name === 'hg_last_used_writes_total')
    return (m?.values ?? []).reduce((a, v) => a + v.value, 0)
  }

  const results = await Promise.all(Array.from({ length: 200 }, (_, i) => env.get('/api/scans', i % 2 === 0 ? pat.token : other.token)))
  t.ok(results.every(r => r.statusCode === 200))
  const deadline = Date.now() + 5000
  let lastUsed: Date | null = null
  while (Date.now() < deadline) {
    const row = await env.sql.query<{ last_used_at: Date | null }>('SELECT last_used_at FROM personal_access_tokens WHERE id = $1', [pat.id])
    lastUsed = row.rows[0]?.last_used_at ?? null
    if (lastUsed !== null) break
    await sleep(100)
  }
  t.ok(lastUsed !== null, 'set soon after use')
  t.ok(Math.abs((lastUsed?.getTime() ?? 0) - Date.now()) < 60_000)
  // The other token may land in the next flush: waited for, then nothing more comes.
  const flushed = Date.now() + 5000
  while (await written() < 2 && Date.now() < flushed) await sleep(50)
  await sleep(400)
  t.equal(await written(), 2, '200 uses of two tokens: each written once')
  t.ok(updates.length >= 1 && updates.length <= 2, `batched: ${updates.length} UPDATE(s)`)

  await Promise.all(Array.from({ length: 100 }, () => env.get('/api/scans', pat.token)))
  await sleep(600)
  t.equal(await written(), 2, 'no second write within the minute, under load')
})

t.test('pending marks are flushed on shutdown', async t => {
  const env = await startStack(t, { config: { auth: { lastUsed: { flushIntervalMs: 3_600_000, minIntervalSeconds: 60 } } } })
  const pat = await env.mintPat()
  t.equal((await env.get('/api/scans', pat.token)).statusCode, 200)
  t.equal(env.sidecar.lastUsed.pending, 1)
  const before = await env.sql.query<{ last_used_at: Date | null }>('SELECT last_used_at FROM personal_access_tokens WHERE id = $1', [pat.id])
  t.equal(before.rows[0]?.last_used_at, null)
  await env.sidecar.close()
  const after = await env.sql.query<{ last_used_at: Date | null }>('SELECT last_used_at FROM personal_access_tokens WHERE id = $1', [pat.id])
  t.ok(after.rows[0]?.last_used_at instanceof Date, 'written by close()')
})
