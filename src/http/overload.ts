import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { getHeapStatistics } from 'node:v8'
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'

export interface OverloadLimits {
  /** 0 disables each. */
  maxEventLoopDelayMs: number
  maxEventLoopUtilization: number
  maxHeapUsedBytes: number
  maxRssBytes: number
}

export interface OverloadOptions extends OverloadLimits {
  sampleIntervalMs?: number
  /** Answers a request refused while overloaded. */
  onPressure: (request: FastifyRequest, reply: FastifyReply) => void
}

/**
 * Load shedding (docs/DESIGN.md §2.1): 503 while the event loop lags or is
 * saturated, or memory is over a limit. In place of @fastify/under-pressure,
 * whose sampler calls process.memoryUsage() from a timer: that opens
 * /proc/self/stat and throws EMFILE, uncaught, when descriptors run out. Here
 * the heap comes from V8 (no descriptor), and the RSS read is the only one
 * that touches /proc: it runs only when an RSS limit is set, and a failure
 * keeps the previous value.
 */
export function registerOverload (app: FastifyInstance, opts: OverloadOptions): void {
  const interval = Math.max(10, opts.sampleIntervalMs ?? 1000)
  const histogram = monitorEventLoopDelay({ resolution: 10 })
  histogram.enable()
  let elu = performance.eventLoopUtilization()
  let delayMs = 0
  let utilization = 0
  let heapUsed = 0
  let rss = 0
  /** Decided once per sample; each request only reads it. */
  let overloaded = false

  function sample (): void {
    try {
      delayMs = Math.max(0, histogram.mean / 1e6 - 10)
      histogram.reset()
      // Over the last window, not since start (@fastify/under-pressure's cumulative
      // default): a process saturated from its first second, or for long enough,
      // crossed the limit since start and then shed nearly every request for as long
      // as the load lasted (docs/DESIGN.md §7). Off by default: a loop that keeps up
      // with a saturating load reads ~1.0 as well; the delay limit sees one falling behind.
      const now = performance.eventLoopUtilization()
      utilization = performance.eventLoopUtilization(now, elu).utilization
      elu = now
      if (opts.maxHeapUsedBytes > 0) heapUsed = getHeapStatistics().used_heap_size
      if (opts.maxRssBytes > 0) rss = process.memoryUsage.rss()
    } catch {
      // EMFILE and the like: keep the last sample; the next tick tries again.
    }
    overloaded = (opts.maxEventLoopDelayMs > 0 && delayMs > opts.maxEventLoopDelayMs) ||
      (opts.maxEventLoopUtilization > 0 && utilization > opts.maxEventLoopUtilization) ||
      (opts.maxHeapUsedBytes > 0 && heapUsed > opts.maxHeapUsedBytes) ||
      (opts.maxRssBytes > 0 && rss > opts.maxRssBytes)
  }
  const timer = setInterval(sample, interval)
  timer.unref()
  app.addHook('onClose', (_app, done) => {
    clearInterval(timer)
    histogram.disable()
    done()
  })

  app.addHook('onRequest', (request, reply, done) => {
    if (overloaded) {
      opts.onPressure(request, reply)
      return
    }
    done()
  })
}

/** Whether any limit is on. */
export function overloadEnabled (o: OverloadLimits): boolean {
  return o.maxEventLoopDelayMs > 0 || o.maxEventLoopUtilization > 0 || o.maxHeapUsedBytes > 0 || o.maxRssBytes > 0
}
