import t, { type Test } from 'tap'
import { heldToken, metric, send, until } from '../helpers/queue.js'
import { startStack, type Stack } from '../helpers/stack.js'

// Issue 23: a memo hit in the last 20 % of its entry's lifetime is answered from
// the entry and schedules one background re-verification. The memo's clock is
// the test's; random() = 0.5 means no jitter, so an entry made at T lives until
// T + 100 s and is due for refresh from T + 80 s. A slow token holds the pool's
// one slot, so a refresh waits in the background lane where the test can see it.
const TTL = 100
const HITS = 'hg_verify_memo_requests_total{result="hit"}'
const RENEWED = 'hg_verify_memo_refreshes_total{result="renewed"}'
const REVOKED = 'hg_auth_decisions_total{type="pat",result="deny",reason="revoked"}'

async function clockedStack (t: Test): Promise<{ env: Stack, advance: (seconds: number) => void }> {
  let now = Date.now()
  const env = await startStack(t, { now: () => now, random: () => 0.5, config: { auth: { memoTtlSeconds: TTL, bcryptConcurrency: 1, bcryptQueueSize: 8 } } })
  return { env, advance: seconds => { now += seconds * 1000 } }
}

t.test('a hit in the refresh window is answered from the memo and triggers one background compare', async t => {
  const { env, advance } = await clockedStack(t)
  const slow = await heldToken(env)
  const { token } = await env.mintPat()
  const pool = env.sidecar.bcrypt

  t.equal((await env.get('/api/scans', token)).statusCode, 200)
  t.equal(pool.compares, 1)
  advance(50)
  t.equal((await env.get('/api/scans', token)).statusCode, 200)
  t.equal(pool.backgroundQueued + pool.active, 0, 'mid-life: no refresh')

  const blocker = send(env, slow.token)
  await until('the slow compare runs', () => pool.active === 1)
  advance(35)
  const hitsBefore = await metric(env, HITS)
  for (let i = 0; i < 3; i++) t.equal((await env.get('/api/scans', token)).statusCode, 200, 'answered while its refresh has not run')
  t.equal(await metric(env, HITS), hitsBefore + 3, 'from the memo')
  // The refresh reaches the bcrypt queue after its tag lookup, off the request path: waited for, not assumed.
  await until('the refresh is queued', () => pool.backgroundQueued === 1)
  t.equal(pool.backgroundQueued, 1, 'one refresh scheduled for three hits in the window')
  t.equal(pool.queued, 0, 'not in the request queue')
  t.equal(pool.compares, 2, 'the refresh has not run yet: only the slow compare has')

  slow.release()
  t.equal((await blocker.response)?.status, 200)
  await until('the refresh has renewed the entry', async () => await metric(env, RENEWED) === 1)
  t.equal(pool.compares, 3, 'one background compare')

  advance(30)
  t.equal((await env.get('/api/scans', token)).statusCode, 200)
  t.equal(pool.compares, 3, 'past the first entry\'s expiry: the renewed entry answers, no compare')
  t.equal(pool.backgroundQueued + pool.active, 0, 'and it is not due again yet')
})

t.test('a revoked token is refused on the next request even while its refresh is pending', async t => {
  const { env, advance } = await clockedStack(t)
  const slow = await heldToken(env)
  const pat = await env.mintPat()
  const pool = env.sidecar.bcrypt

  t.equal((await env.get('/api/scans', pat.token)).statusCode, 200)
  const blocker = send(env, slow.token)
  await until('the slow compare runs', () => pool.active === 1)
  advance(85)
  t.equal((await env.get('/api/scans', pat.token)).statusCode, 200)
  await until('its refresh is queued', () => pool.backgroundQueued === 1)
  t.equal(pool.backgroundQueued, 1, 'its refresh waits')

  // In-process (the CLI's own service): a CLI process start can outlast the slow compare.
  await env.service.revokePat(pat.id)
  const res = await env.get('/api/scans', pat.token)
  t.equal(res.statusCode, 401)
  t.equal(res.json().error, 'unauthorized')
  t.equal(await metric(env, REVOKED), 1, 'refused as revoked')
  t.equal(pool.backgroundQueued, 1, 'while the refresh was still pending')

  slow.release()
  t.equal((await blocker.response)?.status, 200)
  await until('the refresh has run', async () => pool.backgroundQueued === 0 && pool.active === 0)
  const again = await env.get('/api/scans', pat.token)
  t.equal(again.statusCode, 401, 'a renewed entry changes nothing: the fresh state decides')
  t.equal(await metric(env, REVOKED), 2)
})

t.test('a request that misses while a refresh waits joins it and moves it up to the request queue', async t => {
  const { env, advance } = await clockedStack(t)
  const slow = await heldToken(env)
  const { token } = await env.mintPat()
  const pool = env.sidecar.bcrypt

  t.equal((await env.get('/api/scans', token)).statusCode, 200)
  const blocker = send(env, slow.token)
  await until('the slow compare runs', () => pool.active === 1)
  advance(85)
  t.equal((await env.get('/api/scans', token)).statusCode, 200)
  await until('its refresh is queued', () => pool.backgroundQueued === 1)
  t.equal(pool.backgroundQueued, 1)

  advance(20)
  const late = send(env, token)
  await until('the request past the entry\'s expiry joined the refresh', async () => await metric(env, 'hg_verify_shared_total') === 1)
  t.equal(pool.backgroundQueued, 0, 'no longer background work')
  t.equal(pool.queued, 1, 'a request waits for it now')

  slow.release()
  t.equal((await blocker.response)?.status, 200)
  t.equal((await late.response)?.status, 200)
  t.equal(pool.compares, 3, 'the first use, the slow token, and one compare shared by the refresh and the request')
})
