import type { Metric, Registry } from 'prom-client'

// The per-request metrics. prom-client's own Counter and Histogram validate the
// label set, build a hash string and look it up on every inc()/observe(); with
// several per request that was ~5% of the memoized path's CPU. These keep one
// plain record per label set (the caller holds on to it), so the hot path is an
// addition and a bucket search; the record is turned into prom-client's export
// shape only when the registry is scraped. For the values these metrics see
// (counts, finite non-negative durations) the exposition is the same as
// prom-client's (test/ops/fast-metrics.test.ts compares them). Where prom-client
// would throw (a non-finite observation, a negative increment) these ignore the
// value, and after resetMetrics() a label set already seen stays exported at 0.

interface ExportedValue {
  value: number
  labels: Record<string, string | number>
  metricName?: string
}

interface Exported {
  name: string
  help: string
  type: 'counter' | 'histogram'
  values: ExportedValue[]
  aggregator: 'sum'
}

export interface CounterChild {
  inc(n?: number): void
}

export interface HistogramChild {
  observe(value: number): void
}

function labelObject (names: readonly string[], values: readonly string[]): Record<string, string> {
  const o: Record<string, string> = {}
  names.forEach((n, i) => { o[n] = values[i] ?? '' })
  return o
}

/**
 * Records by label values, through nested maps (one level per label): a lookup
 * builds no key string (a joined key was a new string to allocate and hash on
 * every call). `all` holds the records in creation order.
 */
export class LabelTree<T> {
  private readonly root = new Map<string, unknown>()
  readonly all: T[] = []

  lookup (values: readonly string[], make: (values: readonly string[]) => T): T {
    let level = this.root
    const last = values.length - 1
    for (let i = 0; i < last; i++) {
      const v = values[i] as string
      let next = level.get(v) as Map<string, unknown> | undefined
      if (next === undefined) {
        next = new Map()
        level.set(v, next)
      }
      level = next
    }
    const key = last < 0 ? '' : values[last] as string
    let c = level.get(key) as T | undefined
    if (c === undefined) {
      c = make(values)
      level.set(key, c)
      this.all.push(c)
    }
    return c
  }
}

abstract class FastMetric<C> {
  readonly aggregator = 'sum' as const
  protected readonly children = new LabelTree<C>()
  private readonly make = (values: readonly string[]): C => this.create(labelObject(this.labelNames, values))

  constructor (readonly name: string, readonly help: string, protected readonly labelNames: readonly string[], registry: Registry) {
    registry.registerMetric(this as unknown as Metric)
  }

  /** The record of one label set (values in labelNames order); keep it, the hot path uses it directly. */
  child (...values: string[]): C {
    return this.children.lookup(values, this.make)
  }

  protected abstract create (labels: Record<string, string>): C
  abstract get (): Promise<Exported>
  abstract reset (): void
}

class CounterRecord implements CounterChild {
  value = 0
  constructor (readonly labels: Record<string, string>) {}
  inc (n = 1): void {
    if (n >= 0) this.value += n
  }
}

export class FastCounter extends FastMetric<CounterRecord> {
  readonly type = 'counter' as const

  protected create (labels: Record<string, string>): CounterRecord {
    return new CounterRecord(labels)
  }

  async get (): Promise<Exported> {
    const values: ExportedValue[] = []
    for (const c of this.children.all) values.push({ value: c.value, labels: { ...c.labels } })
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator }
  }

  /** Zeroes every record (the records stay valid for whoever holds them). */
  reset (): void {
    for (const c of this.children.all) c.value = 0
  }
}

class HistogramRecord implements HistogramChild {
  /** Observations per bucket, not cumulative; one more slot for +Inf. */
  readonly counts: Float64Array
  sum = 0
  count = 0
  constructor (readonly labels: Record<string, string>, private readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length + 1)
  }

  observe (value: number): void {
    if (!Number.isFinite(value)) return
    const b = this.bounds
    let i = 0
    while (i < b.length && value > (b[i] as number)) i++
    this.counts[i] = (this.counts[i] as number) + 1
    this.sum += value
    this.count++
  }
}

export class FastHistogram extends FastMetric<HistogramRecord> {
  readonly type = 'histogram' as const
  private readonly bounds: readonly number[]

  constructor (name: string, help: string, labelNames: readonly string[], buckets: readonly number[], registry: Registry) {
    super(name, help, labelNames, registry)
    this.bounds = [...buckets].sort((a, b) => a - b)
  }

  protected create (labels: Record<string, string>): HistogramRecord {
    return new HistogramRecord(labels, this.bounds)
  }

  async get (): Promise<Exported> {
    const values: ExportedValue[] = []
    const bucket = `${this.name}_bucket`
    for (const c of this.children.all) {
      let acc = 0
      this.bounds.forEach((le, i) => {
        acc += c.counts[i] as number
        values.push({ value: acc, labels: { le, ...c.labels }, metricName: bucket })
      })
      values.push(
        { value: c.count, labels: { le: '+Inf', ...c.labels }, metricName: bucket },
        { value: c.sum, labels: { ...c.labels }, metricName: `${this.name}_sum` },
        { value: c.count, labels: { ...c.labels }, metricName: `${this.name}_count` }
      )
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator }
  }

  reset (): void {
    for (const c of this.children.all) {
      c.counts.fill(0)
      c.sum = 0
      c.count = 0
    }
  }
}
