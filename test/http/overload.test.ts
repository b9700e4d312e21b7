import t from 'tap'
import type { Test } from 'tap'
import Fastify from 'fastify'
import type { FastifyInstance } from 'fastify'
import { setTimeout as sleep } from 'node:timers/promises'
import { loadConfig } from '../../src/config/load.js'
import { registerOverload } from '../../src/http/overload.js'
import type { OverloadLimits } from '../../src/http/overload.js'

// Load shedding (docs/DESIGN.md §7): each test keeps the loop busy itself in 20-ms
// slices with a turn between them, as a process serving a saturating load does
// (utilization ~1.0, delay ~20 ms). Other load on the machine cannot lower that reading.
async function keepBusy (ms: number): Promise<void> {
  const end = Date.now() + ms
  while (Date.now() < end) {
    const slice = Date.now() + 20
    while (Date.now() < slice) { /* work */ }
    await new Promise(resolve => setImmediate(resolve))
  }
}

async function app (t: Test, limits: OverloadLimits): Promise<FastifyInstance> {
  const a = Fastify()
  registerOverload(a, { ...limits, sampleIntervalMs: 50, onPressure: (_req, reply) => { void reply.code(503).send({ shed: true }) } })
  a.get('/', async () => ({ ok: true }))
  await a.ready()
  t.teardown(() => a.close())
  return a
}

t.test('with the default limits, a process saturated from its start keeps answering', async t => {
  // The old default, 0.98 read since start, shed this (a rollout into peak traffic):
  // the default now leaves utilization off and the delay limit on.
  const limits = loadConfig().server.overload
  const a = await app(t, limits)
  await keepBusy(2500)
  const res = await a.inject({ method: 'GET', url: '/' })
  t.equal(res.statusCode, 200, 'a busy loop that keeps up is not shed')
})

t.test('a utilization limit reads the last window: it sheds a saturated loop after a long idle time, and recovers', async t => {
  const a = await app(t, { maxEventLoopDelayMs: 0, maxEventLoopUtilization: 0.9, maxHeapUsedBytes: 0, maxRssBytes: 0 })
  // Idle first: since start, utilization would stay far below the limit.
  await sleep(1500)
  t.equal((await a.inject({ method: 'GET', url: '/' })).statusCode, 200, 'idle: answered')
  await keepBusy(400)
  const shed = await a.inject({ method: 'GET', url: '/' })
  t.equal(shed.statusCode, 503, 'saturated over the last window: shed')
  t.same(shed.json(), { shed: true })
  await sleep(300)
  t.equal((await a.inject({ method: 'GET', url: '/' })).statusCode, 200, 'a window later: answered again')
})
