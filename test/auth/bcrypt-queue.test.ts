import t from 'tap'
import { connections, heldToken, send, tokenWithCost, until } from '../helpers/queue.js'
import { startStack, type Stack } from '../helpers/stack.js'

function errorLines (env: Stack): Array<Record<string, unknown>> {
  return env.logs.records().filter(r => typeof r.level === 'number' && r.level >= 50)
}

t.test('a compare still queued when its client leaves is never run', async t => {
  const env = await startStack(t, { config: { auth: { bcryptConcurrency: 1, bcryptQueueSize: 4 } } })
  const slow = await heldToken(env)
  const left = [await tokenWithCost(env, 4), await tokenWithCost(env, 4)]
  const pool = env.sidecar.bcrypt

  const first = send(env, slow.token)
  await until('the slow compare runs', () => pool.active === 1)
  const gone = left.map(token => send(env, token))
  await until('both wait in the queue', () => pool.queued === 2)
  for (const g of gone) g.abandon()
  await until('the sidecar sees both connections closed', async () => await connections(env) === 1)
  t.equal(pool.compares, 1, 'only the slow compare has run so far')

  slow.release()
  t.equal((await first.response)?.status, 200, 'the client that stayed gets its answer')
  await until('the pool is idle', () => pool.active === 0 && pool.queued === 0)
  t.equal(pool.compares, 1, 'the two abandoned compares never ran')
  t.equal(pool.abandoned, 2)
  t.equal(pool.rejections, 0)
  t.match((await env.sidecar.metrics.render()).body, /hg_auth_decisions_total\{type="pat",result="deny",reason="client_gone"\} 2/)
  t.same(errorLines(env), [], 'a client leaving is not an error')

  // The slot was handed on correctly: the pool still works, and the abandoned
  // tokens were not remembered as bad.
  for (const token of left) t.equal((await env.get('/api/scans', token)).statusCode, 200)
  t.equal(pool.compares, 3)
})

t.test('a full queue lets go of clients that left before refusing one still connected', async t => {
  const env = await startStack(t, { config: { auth: { bcryptConcurrency: 1, bcryptQueueSize: 1 } } })
  const slow = await heldToken(env)
  const leaving = await tokenWithCost(env, 4)
  const staying = await tokenWithCost(env, 4)
  const pool = env.sidecar.bcrypt

  const first = send(env, slow.token)
  await until('the slow compare runs', () => pool.active === 1)
  const gone = send(env, leaving)
  await until('the queue is full', () => pool.queued === 1)
  gone.abandon()
  await until('the sidecar sees the connection closed', async () => await connections(env) === 1)
  const later = send(env, staying)
  await until('the newcomer took the freed place', () => pool.abandoned === 1 && pool.queued === 1)

  slow.release()
  t.equal((await first.response)?.status, 200)
  t.equal((await later.response)?.status, 200, 'queued, not refused')
  t.equal(pool.rejections, 0)
  t.equal(pool.compares, 2)
})

t.test('a saturated pool answers 503 with Retry-After at once, and logs no error per refusal', async t => {
  const env = await startStack(t, { config: { auth: { bcryptConcurrency: 1, bcryptQueueSize: 1 } } })
  const slow = await heldToken(env)
  const queued = await tokenWithCost(env, 4)
  const refused = await tokenWithCost(env, 4)
  const pool = env.sidecar.bcrypt

  const first = send(env, slow.token)
  await until('the slow compare runs', () => pool.active === 1)
  const second = send(env, queued)
  await until('the queue is full', () => pool.queued === 1)
  const res = await send(env, refused).response
  t.equal(pool.active, 1, 'answered while the slow compare still ran')
  t.equal(res?.status, 503)
  t.equal(res?.headers['retry-after'], '1')
  t.same(JSON.parse(res?.body ?? '{}'), { error: 'unavailable', message: 'Credential verification is saturated; retry shortly' })
  slow.release()
  t.equal((await first.response)?.status, 200)
  t.equal((await second.response)?.status, 200)
  t.equal(pool.rejections, 1)
  t.same(errorLines(env), [], 'saturation is the contract\'s 503 and a metric, not an error line per request')
  t.equal((await env.get('/api/scans', refused)).statusCode, 200, 'the refused token is not remembered as bad')
})

t.test('a client that leaves during its compare gets no state read, and no error line', async t => {
  const env = await startStack(t)
  const held = await heldToken(env)
  const token = held.token
  const pool = env.sidecar.bcrypt
  const statesBefore = await stateQueries(env)
  const sent = send(env, token)
  await until('its compare runs', () => pool.active === 1)
  sent.abandon()
  await until('the sidecar sees the connection closed', async () => await connections(env) === 0)
  held.release()
  await until('the compare has finished', () => pool.active === 0)
  await until('the decision is recorded', async () => /reason="client_gone"\} 1/.test((await env.sidecar.metrics.render()).body))
  t.equal(await stateQueries(env), statesBefore, 'no fresh-state query for it')
  t.same(errorLines(env), [])
  t.equal((await env.get('/api/scans', token)).statusCode, 200, 'the token itself is fine (and now memoized)')
  t.equal(await stateQueries(env), statesBefore + 1, 'its state is read once it is answered')
  t.equal(pool.compares, 1, 'the match was remembered: no second compare')
})

async function stateQueries (env: Stack): Promise<number> {
  const m = /hg_db_query_duration_seconds_count\{query="pat_states",result="ok"\} (\d+)/.exec((await env.sidecar.metrics.render()).body)
  return m === null ? 0 : Number(m[1])
}
