// The load generator: autocannon in a process of its own (pinned to the
// load core by run.mjs), driven over IPC. Several `run` commands may be in
// flight at once (the event-loop stall check runs two loads together).
import { randomBytes, randomInt } from 'node:crypto'
import http from 'node:http'
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
 *         wrongUnder? (list name of prefixes: every request a fresh wrong
 *         secret under one of them, so no negative memo answers it),
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

  if (spec.wrongUnder !== undefined) {
    const prefixes = lists.get(spec.wrongUnder)
    if (prefixes === undefined) throw new Error(`no list ${spec.wrongUnder}`)
    opts.requests = [{ ...base, setupRequest: req => ({ ...req, headers: { ...req.headers, [header]: wrongUnder(prefixes) } }) }]
  } else if (list === null) {
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

/** hg_pat_ + 3 hex of a live prefix + 45 random hex: well-formed, its prefix live, its secret wrong. */
let entropy = Buffer.alloc(0)
let at = 0
function wrongUnder (prefixes) {
  if (at + 23 > entropy.length) {
    entropy = randomBytes(23 * 4096)
    at = 0
  }
  const secret = entropy.toString('hex', at, at + 23).slice(0, 45)
  at += 23
  return prefixes[randomInt(prefixes.length)] + secret
}

/** A loopback address other than 127.0.0.1 (Linux routes all of 127/8 to lo). */
const randomLoopback = () => `127.${1 + randomInt(254)}.${randomInt(256)}.${1 + randomInt(254)}`

/**
 * The guessing flood: `connections` clients, each sending one request at a
 * time on a new connection from a random 127.x.y.z source address (what a
 * botnet or a pool of proxies looks like to the per-address limiter), every
 * one a fresh wrong secret under a live prefix (`prefixes`: list name), for
 * `duration` seconds. spec: { port, path, connections, duration, prefixes }.
 */
async function flood (spec) {
  const prefixes = lists.get(spec.prefixes)
  if (prefixes === undefined) throw new Error(`no list ${spec.prefixes}`)
  const statuses = {}
  let errors = 0
  const end = performance.now() + spec.duration * 1000
  const started = performance.now()
  const one = () => new Promise(resolve => {
    const req = http.request({
      host: '127.0.0.1',
      port: spec.port,
      path: spec.path,
      agent: false,
      localAddress: randomLoopback(),
      headers: { 'x-api-key': wrongUnder(prefixes), connection: 'close' },
      timeout: 30_000
    }, res => {
      statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1
      res.resume()
      res.on('end', resolve)
      res.on('error', resolve)
    })
    req.on('timeout', () => req.destroy(new Error('timeout')))
    req.on('error', () => { errors++; resolve() })
    req.end()
  })
  await Promise.all(Array.from({ length: spec.connections }, async () => {
    while (performance.now() < end) await one()
  }))
  const durationS = (performance.now() - started) / 1000
  const total = Object.values(statuses).reduce((a, b) => a + b, 0)
  return { durationS, total, rps: total / durationS, statuses, errors }
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
      case 'flood':
        result = await flood(msg.spec)
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
