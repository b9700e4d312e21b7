import assert from 'node:assert/strict'
import fc from 'fast-check'
import { Counter, Histogram, Registry } from 'prom-client'
import t from 'tap'
import { FastCounter, FastHistogram } from '../../src/ops/fast-metrics.js'

const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
const TYPES = ['pat', 'api_key', 'none']
const RESULTS = ['allow', 'deny']

// The per-request metrics must expose exactly what prom-client's own would.
t.test('FastCounter and FastHistogram expose the same text and JSON as prom-client', async t => {
  await fc.assert(fc.asyncProperty(
    fc.array(fc.record({
      type: fc.constantFrom(...TYPES),
      result: fc.constantFrom(...RESULTS),
      seconds: fc.oneof(fc.double({ min: 0, max: 20, noNaN: true }), fc.constantFrom(...BUCKETS), fc.constant(0)),
      by: fc.integer({ min: 1, max: 3 })
    }), { maxLength: 60 }),
    async events => {
      const ref = new Registry()
      const fast = new Registry()
      const refCounter = new Counter({ name: 'x_total', help: 'c', labelNames: ['type', 'result'], registers: [ref] })
      const refHistogram = new Histogram({ name: 'x_seconds', help: 'h', labelNames: ['type', 'result'], buckets: BUCKETS, registers: [ref] })
      const fastCounter = new FastCounter('x_total', 'c', ['type', 'result'], fast)
      const fastHistogram = new FastHistogram('x_seconds', 'h', ['type', 'result'], BUCKETS, fast)
      for (const e of events) {
        refCounter.labels({ type: e.type, result: e.result }).inc(e.by)
        refHistogram.labels({ type: e.type, result: e.result }).observe(e.seconds)
        fastCounter.child(e.type, e.result).inc(e.by)
        fastHistogram.child(e.type, e.result).observe(e.seconds)
      }
      // Thrown, so that fast-check sees a failure and shrinks it.
      assert.equal(await fast.metrics(), await ref.metrics())
      // prom-client carries empty `exemplar` keys (exemplars are off), which mean nothing.
      const plain = (v: unknown): unknown => JSON.parse(JSON.stringify(v, (k, x: unknown) => k === 'exemplar' ? undefined : x))
      assert.deepEqual(plain(await fast.getMetricsAsJSON()), plain(await ref.getMetricsAsJSON()))
    }), { numRuns: 100 })
  t.pass('100 random sequences of label sets and values: same text and JSON')
})

t.test('a held record stays valid across reset()', async t => {
  const registry = new Registry()
  const c = new FastCounter('y_total', 'c', ['result'], registry)
  const h = new FastHistogram('y_seconds', 'h', [], [1], registry)
  const hit = c.child('hit')
  hit.inc()
  h.child().observe(0.5)
  registry.resetMetrics()
  hit.inc(2)
  t.match(await registry.metrics(), /y_total\{result="hit"\} 2/)
  t.match(await registry.metrics(), /y_seconds_count 0/)
})
