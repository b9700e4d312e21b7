import t from 'tap'
import { connections, heldToken, metric, send, until } from '../helpers/queue.js'
import { startStack } from '../helpers/stack.js'

// Issue 23: requests presenting the same credential while it is being verified
// share one bcrypt compare. A slow token holds the pool's one slot while the
// test lines the others up behind it.
const MISSES = 'hg_verify_memo_requests_total{result="miss"}'
const SHARED = 'hg_verify_shared_total'

t.test('32 concurrent requests with one never-verified credential cause exactly one compare', async t => {
  const env = await startStack(t, { config: { auth: { bcryptConcurrency: 1, bcryptQueueSize: 32 } } })
  const slow = await heldToken(env)
  const { token } = await env.mintPat()
  const pool = env.sidecar.bcrypt

  const blocker = send(env, slow.token)
  await until('the slow compare runs', () => pool.active === 1)
  const many = Array.from({ length: 32 }, () => send(env, token))
  await until('all 32 have missed the memo', async () => await metric(env, MISSES) === 33)
  await until('the first one\'s compare waits', () => pool.queued >= 1)
  t.equal(pool.queued, 1, 'one compare queued for the 32 requests')
  t.equal(await metric(env, SHARED), 31, 'the other 31 wait for it')

  slow.release()
  t.equal((await blocker.response)?.status, 200)
  const statuses = (await Promise.all(many.map(async s => (await s.response)?.status)))
  t.same(statuses, Array(32).fill(200), 'every one of them is answered')
  t.equal(pool.compares, 2, 'the slow token\'s compare and one for the 32')
  t.equal(pool.rejections, 0)
  t.equal((await env.get('/api/scans', token)).statusCode, 200)
  t.equal(pool.compares, 2, 'and the match was memoized')
})

t.test('a shared compare still runs when the request that started it leaves', async t => {
  const env = await startStack(t, { config: { auth: { bcryptConcurrency: 1, bcryptQueueSize: 4 } } })
  const slow = await heldToken(env)
  const { token } = await env.mintPat()
  const pool = env.sidecar.bcrypt

  const blocker = send(env, slow.token)
  await until('the slow compare runs', () => pool.active === 1)
  const first = send(env, token)
  await until('the first request\'s compare waits', () => pool.queued === 1)
  const others = [send(env, token), send(env, token), send(env, token)]
  await until('the others joined it', async () => await metric(env, SHARED) === 3)
  first.abandon()
  await until('the sidecar sees the first connection closed', async () => await connections(env) === 4)

  slow.release()
  t.equal((await blocker.response)?.status, 200)
  for (const o of others) t.equal((await o.response)?.status, 200, 'answered from the compare the first request started')
  t.equal(pool.abandoned, 0, 'the compare was not dropped with its first requester')
  t.equal(pool.compares, 2)
  await until('the first request\'s decision is recorded', async () => await metric(env, 'hg_auth_decisions_total{type="pat",result="deny",reason="client_gone"}') === 1)
})

t.test('a shared compare whose requests have all left is dropped, and a newcomer still gets its answer', async t => {
  const env = await startStack(t, { config: { auth: { bcryptConcurrency: 1, bcryptQueueSize: 4 } } })
  const slow = await heldToken(env)
  const { token } = await env.mintPat()
  const pool = env.sidecar.bcrypt

  const blocker = send(env, slow.token)
  await until('the slow compare runs', () => pool.active === 1)
  const gone = [send(env, token), send(env, token)]
  await until('both wait for one compare', async () => pool.queued === 1 && await metric(env, SHARED) === 1)
  for (const g of gone) g.abandon()
  await until('the sidecar sees both connections closed', async () => await connections(env) === 1)

  slow.release()
  t.equal((await blocker.response)?.status, 200)
  await until('the pool is idle', () => pool.active === 0 && pool.queued === 0)
  t.equal(pool.compares, 1, 'the compare nobody waited for any more never ran')
  t.equal(pool.abandoned, 1)
  await until('both decisions are recorded', async () => await metric(env, 'hg_auth_decisions_total{type="pat",result="deny",reason="client_gone"}') === 2)
  t.equal((await env.get('/api/scans', token)).statusCode, 200, 'not remembered as bad')
  t.equal(pool.compares, 2)
})

t.test('different credentials never share a verification', async t => {
  const env = await startStack(t, { config: { auth: { bcryptConcurrency: 1, bcryptQueueSize: 8 } } })
  const slow = await heldToken(env)
  const good = await env.mintPat()
  // Same prefix, wrong secret: must not ride on the valid token's compare.
  const wrong = good.token.slice(0, 10) + (good.token.slice(10, 11) === '0' ? '1' : '0') + good.token.slice(11)
  const pool = env.sidecar.bcrypt

  const blocker = send(env, slow.token)
  await until('the slow compare runs', () => pool.active === 1)
  const a = send(env, good.token)
  const b = send(env, wrong)
  await until('both wait', async () => await metric(env, MISSES) === 3)
  slow.release()
  t.equal((await blocker.response)?.status, 200)
  t.equal((await a.response)?.status, 200)
  t.equal((await b.response)?.status, 401)
  t.equal(await metric(env, SHARED), 0)
})
