// One server under test per process, driven over IPC by bench/run.mjs:
//   upstream  plain node:http origin answering a ~100-byte JSON body
//   baseline  fastify + @fastify/http-proxy, no authentication (the floor of our stack)
//   sidecar   createSidecar() from dist/ with the given config overrides
//   bcrypt    no server: measures bcrypt.compare throughput on all cores
//   assertion no server: the cost of one signed identity assertion (fresh, reused) and of Ed25519 alone
import { sign } from 'node:crypto'
import http from 'node:http'
import { availableParallelism } from 'node:os'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { timeCompare } from './bcrypt-time.mjs'

const DIST = new URL('../../dist/', import.meta.url)

// ~100 bytes, like a small scan-service answer.
const BODY = Buffer.from(JSON.stringify({ id: 'scan_7f3a9c2e', status: 'completed', findings: { critical: 0, high: 2, medium: 11 }, ok: true }))

let closeFn = async () => {}
let statsFn = async () => ({})
let compareCount = () => null
let eld = null

function reply (id, result, error) {
  process.send(error === undefined ? { id, result } : { id, error: String(error?.stack ?? error) })
}

async function startUpstream () {
  const server = http.createServer((req, res) => {
    // Drain any request body, then answer.
    req.resume()
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': BODY.length })
    res.end(BODY)
  })
  server.keepAliveTimeout = 60_000
  await new Promise(resolve => server.listen(0, '127.0.0.1', resolve))
  closeFn = () => new Promise(resolve => { server.closeAllConnections(); server.close(() => resolve()) })
  return { port: server.address().port }
}

async function startBaseline ({ upstream, connections }) {
  const { default: Fastify } = await import('fastify')
  const { default: httpProxy } = await import('@fastify/http-proxy')
  const app = Fastify({ logger: false })
  // The same undici pool shape the sidecar's proxy plugin uses.
  await app.register(httpProxy, { upstream, undici: { connections, pipelining: 1 } })
  await app.listen({ host: '127.0.0.1', port: 0 })
  closeFn = () => app.close()
  return { port: app.server.address().port }
}

async function startSidecar ({ overrides, dist }) {
  // dist: another build's dist/ (e.g. the code before a change), for before/after rows.
  const root = dist === undefined ? DIST : new URL(`file://${dist.endsWith('/') ? dist : dist + '/'}`)
  const { loadConfig } = await import(new URL('config/load.js', root))
  const { createSidecar } = await import(new URL('app.js', root))
  const config = loadConfig({ env: {}, overrides })
  const sidecar = await createSidecar(config)
  const ports = await sidecar.listen()
  closeFn = () => sidecar.close()
  // Seconds spent inside bcrypt compares (pool utilization = this / (window x concurrency)).
  let compareSeconds = 0
  sidecar.bcrypt.onCompare(s => { compareSeconds += s })
  // Fresh-state queries sent (from the sidecar's own metrics): requests per query = how well batches coalesce.
  const stateQueries = async () => {
    const m = await sidecar.metrics.registry.getSingleMetric('hg_db_query_duration_seconds')?.get()
    let n = 0
    for (const v of m?.values ?? []) if (v.metricName === 'hg_db_query_duration_seconds_count' && /_states$/.test(String(v.labels.query))) n += v.value
    return n
  }
  /** A counter's values by label value ({} when this build has no such metric). */
  const counter = async (name, label) => {
    const m = await sidecar.metrics.registry.getSingleMetric(name)?.get()
    const out = {}
    for (const v of m?.values ?? []) out[label === undefined ? 'value' : String(v.labels[label])] = v.value
    return out
  }
  compareCount = () => sidecar.bcrypt.compares
  statsFn = async () => ({
    shared: (await counter('hg_verify_shared_total')).value ?? null,
    overloaded: (await counter('hg_overload_rejections_total')).value ?? 0,
    refreshes: await counter('hg_verify_memo_refreshes_total', 'result'),
    memoLookups: await counter('hg_verify_memo_requests_total', 'result'),
    stateQueries: await stateQueries(),
    compareSeconds,
    memo: sidecar.memo.size,
    assertions: sidecar.assertion?.size ?? null,
    compares: sidecar.bcrypt.compares,
    rejections: sidecar.bcrypt.rejections,
    bcryptConcurrency: sidecar.bcrypt.concurrency
  })
  return {
    ...ports,
    bcryptConcurrency: sidecar.bcrypt.concurrency,
    // Absent from builds before issue 23.
    backgroundConcurrency: sidecar.bcrypt.backgroundConcurrency ?? null,
    // What this sidecar's config resolved to, for the report's Method.
    poolSize: config.database.poolSize,
    threadpool: process.env.UV_THREADPOOL_SIZE ?? '4 (libuv default)'
  }
}

/** Compares per second with every core busy, and the time of one compare alone. */
async function bcryptAlone ({ cost, seconds }) {
  const { default: bcrypt } = await import('bcrypt')
  const secret = 'hg_pat_' + 'ab'.repeat(24)
  const { hash, ms: compareMs } = await timeCompare(bcrypt, secret, cost, 3)
  const inFlight = availableParallelism() * 2
  const end = performance.now() + seconds * 1000
  let done = 0
  async function worker () {
    while (performance.now() < end) {
      await bcrypt.compare(secret, hash)
      done++
    }
  }
  const t0 = performance.now()
  await Promise.all(Array.from({ length: inFlight }, worker))
  const elapsed = (performance.now() - t0) / 1000
  return { comparesPerSecond: done / elapsed, compareMs, cores: availableParallelism(), threadpool: Number(process.env.UV_THREADPOOL_SIZE ?? 4) }
}

/** [median, min, max] of per-batch values. */
function spread (values) {
  const v = [...values].sort((a, b) => a - b)
  return { median: v[Math.floor(v.length / 2)], min: v[0], max: v.at(-1), batches: v }
}

/**
 * Issue 21: what one signed identity assertion costs, with the project's own
 * signer (dist/auth/assertion.js) set up as the bench's assertion sidecar sets
 * it up (same config overrides, key generated at start, a member's permissions).
 *   fresh:   distinct credentials, so none is reused: one signature each, awaited
 *            one at a time as the request hook does; wall and process CPU time
 *            (jose signs through WebCrypto, whose Ed25519 job runs on libuv's threadpool).
 *   reuse:   the same identity again while its assertion has more than half its
 *            lifetime left: the cached string, returned synchronously.
 *   ed25519: node:crypto sign() of the same signing input (header.payload), synchronous.
 * Each is the median of `batches` batches, after one unrecorded batch of each (JIT).
 */
async function assertionCost ({ overrides, batches = 5, fresh = 2000, reuse = 200_000, ed25519 = 2000 }) {
  const { loadConfig } = await import(new URL('config/load.js', DIST))
  const { createAssertionSigner, loadAssertionKeys } = await import(new URL('auth/assertion.js', DIST))
  const { createRoleTable } = await import(new URL('auth/principal.js', DIST))
  const config = loadConfig({ env: {}, overrides })
  const a = config.assertion
  const keys = await loadAssertionKeys(a.keyFile)
  const eff = createRoleTable(config.roles).effective('member', null)
  const signer = () => createAssertionSigner({ keys, issuer: a.issuer, audience: a.audience, ttlSeconds: a.ttlSeconds, maxEntries: a.cacheMaxEntries })
  let serial = 0
  const principal = () => {
    const n = String(serial++).padStart(12, '0')
    return {
      type: 'pat',
      credentialId: `7d6f9a3e-0000-4000-8000-${n}`,
      prefix: 'hg_pat_a1b',
      userId: `0c1d2e3f-0000-4000-8000-${n}`,
      orgId: '5a6b7c8d-0000-4000-8000-000000000001',
      role: 'member',
      permissions: eff.list,
      permissionsHeader: eff.header,
      expiresAt: '2027-01-01T00:00:00.000Z'
    }
  }
  const cpuUs = () => { const u = process.cpuUsage(); return u.user + u.system }

  async function freshBatch () {
    // A signer per batch, so every batch fills the same empty cache.
    const s = signer()
    const ps = Array.from({ length: fresh }, principal)
    const c0 = cpuUs()
    const t0 = performance.now()
    for (const p of ps) await s.assertionFor(p)
    const wallUs = (performance.now() - t0) * 1000 / fresh
    return { wallUs, cpuUs: (cpuUs() - c0) / fresh }
  }
  const s = signer()
  const one = principal()
  const token = await s.assertionFor(one)
  function reuseBatch () {
    let len = 0
    const t0 = performance.now()
    for (let i = 0; i < reuse; i++) {
      const out = s.assertionFor(one)
      if (typeof out !== 'string') throw new Error('assertion not reused')
      len += out.length
    }
    const us = (performance.now() - t0) * 1000 / reuse
    if (len !== token.length * reuse) throw new Error('assertion changed while reused')
    return us
  }
  const input = Buffer.from(token.slice(0, token.lastIndexOf('.')))
  function ed25519Batch () {
    let len = 0
    const t0 = performance.now()
    for (let i = 0; i < ed25519; i++) len += sign(null, input, keys.signing.privateKey).length
    if (len !== 64 * ed25519) throw new Error('unexpected Ed25519 signature length')
    return (performance.now() - t0) * 1000 / ed25519
  }

  await freshBatch()
  reuseBatch()
  ed25519Batch()
  const f = []
  const r = []
  const e = []
  for (let b = 0; b < batches; b++) {
    f.push(await freshBatch())
    r.push(reuseBatch())
    e.push(ed25519Batch())
  }
  return {
    batches,
    fresh: { count: fresh, wallUs: spread(f.map(x => x.wallUs)), cpuUs: spread(f.map(x => x.cpuUs)) },
    reuse: { count: reuse, us: spread(r) },
    ed25519: { count: ed25519, us: spread(e) },
    tokenBytes: token.length,
    ttlSeconds: a.ttlSeconds,
    cacheMaxEntries: a.cacheMaxEntries,
    threadpool: process.env.UV_THREADPOOL_SIZE ?? '4 (libuv default)'
  }
}

process.on('message', async msg => {
  try {
    switch (msg.cmd) {
      case 'start': {
        const fn = { upstream: startUpstream, baseline: startBaseline, sidecar: startSidecar }[msg.role]
        if (fn === undefined) throw new Error(`unknown role ${msg.role}`)
        reply(msg.id, await fn(msg.options ?? {}))
        break
      }
      case 'bcrypt':
        reply(msg.id, await bcryptAlone(msg.options))
        break
      case 'assertion':
        reply(msg.id, await assertionCost(msg.options))
        break
      case 'stats': {
        if (msg.gc === true && typeof globalThis.gc === 'function') {
          globalThis.gc()
          globalThis.gc()
        }
        const m = process.memoryUsage()
        reply(msg.id, { rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, ...(await statsFn()) })
        break
      }
      case 'compares':
        // Cheap enough to sample every second under load.
        reply(msg.id, { at: performance.now(), compares: compareCount() })
        break
      case 'now':
        // CLOCK_MONOTONIC in µs: the clock of a .cpuprofile's timestamps.
        reply(msg.id, Number(process.hrtime.bigint() / 1000n))
        break
      case 'eld-start':
        eld = monitorEventLoopDelay({ resolution: 2 })
        eld.enable()
        reply(msg.id, {})
        break
      case 'eld-stop': {
        if (eld === null) throw new Error('eld-start first')
        eld.disable()
        // The histogram includes the 2 ms sampling period itself.
        reply(msg.id, { p50: eld.percentile(50) / 1e6, p99: eld.percentile(99) / 1e6, max: eld.max / 1e6, mean: eld.mean / 1e6 })
        eld = null
        break
      }
      case 'stop':
        try { await closeFn() } catch {}
        process.exit(0)
        break
      default:
        throw new Error(`unknown command ${msg.cmd}`)
    }
  } catch (err) {
    reply(msg.id, undefined, err)
  }
})

process.on('disconnect', () => process.exit(0))
