// The load generator: autocannon in a process of its own (pinned to the
// load core by run.mjs), driven over IPC. Several `run` commands may be in
// flight at once (the event-loop stall check runs two loads together).
import autocannon from 'autocannon'

const lists = new Map()

function percentile (sorted, p) {
  if (sorted.length === 0) return null
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[i]
}

/**
 * spec: { port, path, connections, duration | amount, overallRate?, timeout?,
 *         expect (status), header ('x-api-key'), token? (one value),
 *         tokens? (list name), mode: 'rotate' | 'once', from?, count?,
 *         timeline? (per-second answers, statuses, p99 and max) }
 * rotate: every connection cycles through the whole list from its own offset
 *         (pre-built requests; 32 connections = 32 different tokens at a time).
 * once:   each request takes the next token of list[from, from+count): every
 *         token used exactly once (amount = count, unless a duration is given).
 */
async function run (spec) {
  const method = spec.method ?? 'GET'
  const header = spec.header ?? 'x-api-key'
  const list = spec.tokens === undefined ? null : lists.get(spec.tokens)
  if (spec.tokens !== undefined && list === undefined) throw new Error(`no token list ${spec.tokens}`)
  const opts = {
    url: `http://127.0.0.1:${spec.port}`,
    connections: spec.connections,
    pipelining: 1,
    timeout: spec.timeout ?? 10,
    headers: {}
  }
  if (spec.amount !== undefined) opts.amount = spec.amount
  else if (spec.duration !== undefined) opts.duration = spec.duration
  if (spec.overallRate !== undefined) opts.overallRate = spec.overallRate
  const base = { method, path: spec.path }
  let used = () => null

  if (list === null) {
    opts.requests = [{ ...base, headers: spec.token === undefined ? {} : { [header]: spec.token } }]
  } else if (spec.mode === 'once') {
    const from = spec.from ?? 0
    const count = spec.count ?? list.length - from
    let i = 0
    // With a duration, tokens wrap around after count (reported as `used`).
    if (spec.duration === undefined) opts.amount = count
    used = () => i
    opts.requests = [{
      ...base,
      setupRequest: req => {
        req.headers = { ...req.headers, [header]: list[from + (i++ % count)] }
        return req
      }
    }]
  } else {
    const n = list.length
    const step = Math.max(1, Math.floor(n / spec.connections))
    let k = 0
    opts.requests = [{ ...base, headers: { [header]: list[0] } }]
    opts.setupClient = client => {
      const off = (k++ * step) % n
      const reqs = new Array(n)
      for (let j = 0; j < n; j++) reqs[j] = { ...base, headers: { [header]: list[(off + j) % n] } }
      client.setRequests(reqs)
    }
  }

  if (opts.amount !== undefined) opts.connections = Math.max(1, Math.min(opts.connections, opts.amount))
  const expect = spec.expect ?? 200
  const lat = []
  const statuses = {}
  // timeline[i]: the answers that arrived in second i of the load.
  const timeline = spec.timeline === true ? [] : null
  // autocannon's own `duration` starts before it builds its clients, and with a
  // rotating list that means connections x N pre-rendered requests, built while this
  // process is blocked and no request is in flight (the report gives the run's own
  // median of autocannonDurationS - durationS). Rates are taken over the time the load
  // actually ran instead: from its 'start' event (emitted right after the clients
  // exist) to the end.
  let started = null
  const inst = autocannon(opts)
  inst.on('start', () => { started ??= performance.now() })
  inst.on('response', (_client, statusCode, _bytes, responseTime) => {
    statuses[statusCode] = (statuses[statusCode] ?? 0) + 1
    if (statusCode === expect) lat.push(responseTime)
    if (timeline !== null && started !== null) {
      const i = Math.floor((performance.now() - started) / 1000)
      const b = timeline[i] ??= { lat: [], statuses: {} }
      b.statuses[statusCode] = (b.statuses[statusCode] ?? 0) + 1
      if (statusCode === expect) b.lat.push(responseTime)
    }
  })
  const res = await inst
  const durationS = started === null ? res.duration : (performance.now() - started) / 1000
  const sorted = Float64Array.from(lat).sort()
  const ok = statuses[expect] ?? 0
  const total = Object.values(statuses).reduce((a, b) => a + b, 0)
  let sum = 0
  for (const v of sorted) sum += v
  return {
    durationS,
    /** autocannon's figure, client setup included. */
    autocannonDurationS: res.duration,
    ok,
    total,
    statuses,
    errors: res.errors,
    timeouts: res.timeouts,
    rps: ok / durationS,
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    p999: percentile(sorted, 99.9),
    max: sorted.length === 0 ? null : sorted[sorted.length - 1],
    mean: sorted.length === 0 ? null : sum / sorted.length,
    used: used(),
    timeline: timeline === null
      ? undefined
      : Array.from(timeline, (b = { lat: [], statuses: {} }, second) => {
        const l = Float64Array.from(b.lat).sort()
        return { second, ok: l.length, statuses: b.statuses, p99: percentile(l, 99), max: l.length === 0 ? null : l[l.length - 1] }
      })
  }
}

process.on('message', async msg => {
  try {
    let result
    switch (msg.cmd) {
      case 'tokens':
        lists.set(msg.name, msg.list)
        result = { size: msg.list.length }
        break
      case 'run':
        result = await run(msg.spec)
        break
      case 'stop':
        process.exit(0)
        break
      default:
        throw new Error(`unknown command ${msg.cmd}`)
    }
    process.send({ id: msg.id, result })
  } catch (err) {
    process.send({ id: msg.id, error: String(err?.stack ?? err) })
  }
})

process.on('disconnect', () => process.exit(0))
