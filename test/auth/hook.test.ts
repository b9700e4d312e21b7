import Fastify from 'fastify'
import t from 'tap'
import { errorHandler } from '../../src/http/reply.js'
import type { Pipeline, PipelineResult } from '../../src/auth/pipeline.js'
import { registerAuthHook } from '../../src/auth/plugin.js'
import { HG_ERR_AUTH_INVALID } from '../../src/errors.js'

// The onRequest hook is callback-style: decisions made without I/O are answered in
// the same tick, the others through one promise. These drive it with a pipeline
// that answers whatever each case needs (the real pipeline is tested on its own and
// through the running sidecar everywhere else).
const pass: PipelineResult = {
  pass: true,
  reason: 'ok',
  principal: null,
  decision: { public: false, permission: null, deny: false, upstream: null, local: false },
  path: '/x',
  credentialSource: null,
  kind: null,
  prefix: null
}
const refused: PipelineResult = { pass: false, reason: 'malformed', error: HG_ERR_AUTH_INVALID, kind: null, prefix: null }

async function app (t: Teardown, run: Pipeline['run'], onDecision?: () => void): Promise<ReturnType<typeof Fastify>> {
  const a = Fastify({ logger: false })
  a.setErrorHandler(errorHandler)
  registerAuthHook(a, { pipeline: { run }, onDecision })
  a.get('/x', async request => ({ reason: request.hg?.reason ?? null }))
  t.teardown(() => a.close())
  return a
}
interface Teardown { teardown(fn: () => unknown): void }

t.test('decisions with and without I/O reach the route or answer at once', async t => {
  const seen: string[] = []
  const a = await app(t, req => req.url === '/x?sync' ? pass : req.url === '/x?refuse' ? refused : Promise.resolve(pass), () => seen.push('decided'))
  t.same((await a.inject('/x?sync')).json(), { reason: 'ok' })
  t.same((await a.inject('/x?async')).json(), { reason: 'ok' })
  const r = await a.inject('/x?refuse')
  t.equal(r.statusCode, 401)
  t.same(r.json(), JSON.parse(HG_ERR_AUTH_INVALID.body))
  t.equal(seen.length, 3, 'every decision observed once')
})

t.test('a failing pipeline or observer is a 500 JSON answer, never an unhandled rejection', async t => {
  const rejections: unknown[] = []
  const onRejection = (err: unknown): void => { rejections.push(err) }
  process.on('unhandledRejection', onRejection)
  t.teardown(() => { process.off('unhandledRejection', onRejection) })

  const rejecting = await app(t, async () => { throw new Error('store exploded') })
  const r1 = await rejecting.inject('/x')
  t.equal(r1.statusCode, 500)
  t.match(r1.json(), { error: 'internal' })
  t.notMatch(r1.body, /exploded/, 'the cause is not echoed')

  const throwing = await app(t, () => { throw new Error('sync bug') })
  t.equal((await throwing.inject('/x')).statusCode, 500)

  let calls = 0
  const observer = await app(t, () => Promise.resolve(pass), () => { if (++calls === 1) throw new Error('metrics bug') })
  const r2 = await observer.inject('/x')
  t.equal(r2.statusCode, 500, 'the request that hit the bug fails closed')
  t.same((await observer.inject('/x')).json(), { reason: 'ok' }, 'the next one is served')
  await new Promise(resolve => setImmediate(resolve))
  t.same(rejections, [], 'no unhandled rejection')
})
