#!/usr/bin/env node
// npm run bench [-- options]: the sidecar against a no-auth @fastify/http-proxy
// baseline, measured in one interleaved run; writes docs/BENCHMARKS.md.
// See --help, and docs/BENCHMARKS.md "Method".
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, writeFileSync, existsSync, readdirSync } from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { Redis } from 'ioredis'
import { CORES, CPU, PINNING, cpuDelta, cpuMsOf, cpuSnapshot, killAll, pin, startChild, logPath } from './lib/proc.mjs'
import {
  createDatabase, dropDatabase, insertApiKeys, insertFillers, insertPats, insertWorld, listPositions,
  makeWorld, mintApiKeys, mintPats, prefixStats, serverVersion, tagRemaining, uniqueName
} from './lib/seed.mjs'
import { int, max, mb, median, min, ms, num, ratio, summarizeRuns, textTable, x } from './lib/stats.mjs'
import { autoWindow, summarize as summarizeProfile, toMarkdown as profileMarkdown } from './profile-summary.mjs'
import { renderMarkdown, renderExpiryOnly } from './lib/markdown.mjs'
import { runExpiry } from './lib/expiry.mjs'

const ROOT = fileURLToPath(new URL('../', import.meta.url))
const SERVER = fileURLToPath(new URL('./lib/server.mjs', import.meta.url))
const LOADGEN = fileURLToPath(new URL('./lib/loadgen.mjs', import.meta.url))
// Sizes libuv's threadpool in each sidecar process as the hg-sidecar executable does.
const THREADPOOL = fileURLToPath(new URL('./lib/threadpool.cjs', import.meta.url))
const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379'
const PATH = '/api/scans/42'
// The assertion sidecar's config (issue 21): a key generated at start, default TTL; also what the signing cost is measured with.
const ASSERTION = { enabled: true, audience: 'bench' }
const MALFORMED = 'hg_pat_nope'

const HELP = `npm run bench -- [options]

  --duration S        seconds per measurement (default 10; --quick 3)
  --rounds N          interleaved rounds (default 3; --quick 1)
  --connections N     autocannon connections (default 32)
  --tokens N          real PATs (and API keys) seeded (default 1000; --quick 200)
  --cost N            bcrypt cost of the seeded PATs and the sidecar (default 10)
  --scale LIST        token counts for the scale section, e.g. 1000,100000,1000000
  --scale-duration S  seconds per scale measurement (default: --duration)
  --scale-rounds N    rounds in the scale section (default: --rounds)
  --hot-seconds S     the long hot run for memory (default 60; --quick 0 = skip)
  --memory-tokens N   distinct tokens for the memo-bound memory run (default 100000; --quick 4000; 0 = skip)
  --memo-bound N      memoMaxEntries of that run's sidecar (default 50000; --quick 2000)
  --no-expiry         skip "memo expiry under load" (default: run it, except with --quick)
  --expiry-only       run only "memo expiry under load" (writes bench/results/BENCHMARKS.expiry.md unless --out)
  --expiry-tokens N   tokens primed at once (default 1000)
  --expiry-ttl S      their memo TTL (default 30)
  --expiry-duration S the run after priming (default 2.5 x the TTL: at least two expiries)
  --expiry-cost N     bcrypt cost of those tokens (default 6; see docs/BENCHMARKS.md)
  --flood-valid-rate R  never-used valid tokens per second during the guessing flood (default 10)
  --flood-duration S  seconds of valid tokens alone, then under the flood (default 20; --quick 6): at
                      10/s, 200 samples, so that their p99 is not just the slowest of a few dozen
  --expiry-before DIR also run it on another build's dist/ (e.g. the code before issue 23)
  --profile           always profile the memoized-PAT load (default: only when a target is missed)
  --no-profile        never profile
  --pause S           pause between measurements (default 1)
  --preload S         unrecorded load on a server right before each of its measurements
                      (default 3; --quick 1): an idle Node process has shrunk its heap,
                      and its first seconds under load measure the regrowth, not the path
  --wait-quiet S      before starting, wait up to S seconds for the machine to be quiet (< 25% busy; default 0)
  --quick             a fast smoke run (writes bench/results/BENCHMARKS.quick.md unless --out)
  --out FILE          where the Markdown report goes (default docs/BENCHMARKS.md)
  --render FILE       measure nothing: re-render the report from a run's results.json
`

function parseOptions () {
  const { values } = parseArgs({
    options: {
      duration: { type: 'string' },
      rounds: { type: 'string' },
      connections: { type: 'string' },
      tokens: { type: 'string' },
      cost: { type: 'string' },
      scale: { type: 'string' },
      'scale-duration': { type: 'string' },
      'scale-rounds': { type: 'string' },
      'hot-seconds': { type: 'string' },
      'memory-tokens': { type: 'string' },
      'memo-bound': { type: 'string' },
      'no-expiry': { type: 'boolean' },
      'expiry-only': { type: 'boolean' },
      'expiry-tokens': { type: 'string' },
      'expiry-ttl': { type: 'string' },
      'expiry-duration': { type: 'string' },
      'expiry-cost': { type: 'string' },
      'flood-valid-rate': { type: 'string' },
      'flood-duration': { type: 'string' },
      'expiry-before': { type: 'string' },
      profile: { type: 'boolean' },
      'no-profile': { type: 'boolean' },
      pause: { type: 'string' },
      preload: { type: 'string' },
      'wait-quiet': { type: 'string' },
      quick: { type: 'boolean' },
      out: { type: 'string' },
      render: { type: 'string' },
      help: { type: 'boolean', short: 'h' }
    },
    strict: true
  })
  if (values.help === true) {
    process.stdout.write(HELP)
    process.exit(0)
  }
  const quick = values.quick === true
  const n = (name, dflt, { minimum = 0, integer = true } = {}) => {
    const raw = values[name]
    if (raw === undefined) return dflt
    const v = Number(raw)
    if (!Number.isFinite(v) || v < minimum || (integer && !Number.isInteger(v))) throw new Error(`--${name}: expected a number >= ${minimum}, got ${raw}`)
    return v
  }
  const duration = n('duration', quick ? 3 : 10, { minimum: 1, integer: false })
  const rounds = n('rounds', quick ? 1 : 3, { minimum: 1 })
  const scale = values.scale === undefined
    ? []
    : values.scale.split(',').map(s => s.trim()).filter(s => s !== '').map(s => {
      const v = Number(s.replace(/_/g, ''))
      if (!Number.isInteger(v) || v < 1) throw new Error(`--scale: bad count ${s}`)
      return v
    })
  const cost = n('cost', 10, { minimum: 4 })
  if (cost > 15) throw new Error('--cost: at most 15')
  const expiryOnly = values['expiry-only'] === true
  const expiryTtl = n('expiry-ttl', 30, { minimum: 1 })
  const expiryCost = n('expiry-cost', 6, { minimum: 4 })
  if (expiryCost > 15) throw new Error('--expiry-cost: at most 15')
  let expiryBefore = values['expiry-before'] ?? null
  if (expiryBefore !== null) {
    expiryBefore = resolve(expiryBefore)
    if (!existsSync(join(expiryBefore, 'app.js'))) throw new Error(`--expiry-before: no app.js in ${expiryBefore} (give a dist/ directory)`)
  }
  return {
    quick,
    duration,
    rounds,
    connections: n('connections', 32, { minimum: 1 }),
    tokens: n('tokens', quick ? 200 : 1000, { minimum: 32 }),
    cost,
    scale: [...new Set(scale)].sort((a, b) => a - b),
    scaleDuration: n('scale-duration', duration, { minimum: 1, integer: false }),
    scaleRounds: n('scale-rounds', rounds, { minimum: 1 }),
    hotSeconds: n('hot-seconds', quick ? 0 : 60),
    memoryTokens: n('memory-tokens', quick ? 4000 : 100_000),
    memoBound: n('memo-bound', quick ? 2000 : 50_000, { minimum: 1 }),
    expiry: expiryOnly || (!quick && values['no-expiry'] !== true),
    expiryOnly,
    expiryTokens: n('expiry-tokens', 1000, { minimum: 32 }),
    expiryTtl,
    expiryDuration: n('expiry-duration', Math.ceil(expiryTtl * 2.5), { minimum: 1 }),
    expiryCost,
    expiryBefore,
    floodValidRate: n('flood-valid-rate', 10, { minimum: 1, integer: false }),
    floodDuration: n('flood-duration', quick ? 6 : 20, { minimum: 1 }),
    profile: values['no-profile'] === true ? 'never' : values.profile === true ? 'always' : 'auto',
    pause: n('pause', 1, { integer: false }),
    preload: n('preload', quick ? 1 : 3, { integer: false }),
    waitQuiet: n('wait-quiet', 0),
    out: values.out ?? (expiryOnly ? 'bench/results/BENCHMARKS.expiry.md' : quick ? 'bench/results/BENCHMARKS.quick.md' : 'docs/BENCHMARKS.md'),
    render: values.render ?? null,
    argv: process.argv.slice(2)
  }
}

const sleep = t => new Promise(resolve => setTimeout(resolve, t))

function cpuTimes () {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number)
    return { idle: f[3] + f[4], total: f.reduce((a, b) => a + b, 0) }
  } catch {
    return null
  }
}

/** Waits, and returns how busy all cores were meanwhile (%): other load on the machine, when the bench itself is idle. */
async function pauseSampling (seconds, samples, after = null) {
  const a = cpuTimes()
  await sleep(seconds * 1000)
  const b = cpuTimes()
  if (a !== null && b !== null && b.total > a.total) samples.push({ after, busy: 100 * (1 - (b.idle - a.idle) / (b.total - a.total)) })
}
const started = Date.now()
function log (msg) {
  const t = ((Date.now() - started) / 1000).toFixed(0).padStart(4)
  process.stderr.write(`[${t}s] ${msg}\n`)
}

function pkgVersion (name) {
  try {
    return JSON.parse(readFileSync(join(ROOT, 'node_modules', name, 'package.json'), 'utf8')).version
  } catch {
    return 'n/a'
  }
}

async function machineInfo (redis) {
  let cpuModel = 'unknown'
  try {
    const m = /model name\s*:\s*(.+)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))
    if (m !== null) cpuModel = m[1].trim()
  } catch {}
  let redisVersion = 'unknown'
  try {
    const m = /redis_version:(\S+)/.exec(await redis.info('server'))
    if (m !== null) redisVersion = m[1]
  } catch {}
  let commit = 'unknown'
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim()
    if (execFileSync('git', ['status', '--porcelain', '--', 'src'], { cwd: ROOT, encoding: 'utf8' }).trim() !== '') commit += ' + uncommitted changes in src/'
  } catch {}
  return {
    date: new Date().toISOString(),
    commit,
    nproc: CORES,
    cpus: os.cpus().length,
    cpuModel,
    ramGiB: os.totalmem() / 2 ** 30,
    kernel: `${os.type()} ${os.release()}`,
    pinning: PINNING,
    versions: {
      node: process.version,
      fastify: pkgVersion('fastify'),
      '@fastify/http-proxy': pkgVersion('@fastify/http-proxy'),
      '@fastify/reply-from': pkgVersion('@fastify/reply-from'),
      undici: pkgVersion('undici'),
      pg: pkgVersion('pg'),
      ioredis: pkgVersion('ioredis'),
      bcrypt: pkgVersion('bcrypt'),
      pino: pkgVersion('pino'),
      autocannon: pkgVersion('autocannon'),
      postgresql: await serverVersion(),
      redis: redisVersion
    }
  }
}

/** Plain keep-alive GETs from this (unpinned, otherwise idle) process: the slow cold-path probes. */
function httpGet (agent, port, token, timeoutMs) {
  return new Promise(resolve => {
    const t = performance.now()
    const req = http.request({ host: '127.0.0.1', port, path: PATH, agent, headers: { 'x-api-key': token }, timeout: timeoutMs }, res => {
      res.resume()
      res.on('end', () => resolve({ status: res.statusCode, ms: performance.now() - t }))
    })
    req.on('timeout', () => req.destroy(new Error('timeout')))
    req.on('error', err => resolve({ status: 0, ms: performance.now() - t, error: err.message }))
    req.end()
  })
}

/** --render: the Markdown again from a saved results.json (same numbers; current evaluation and layout). */
function render (opts) {
  const file = resolve(opts.render)
  const report = JSON.parse(readFileSync(file, 'utf8'))
  report.targets = evaluateTargets(report)
  const p = report.profile
  let rewindowed = false
  if (p !== undefined && p.summary.window == null) {
    const prof = join(ROOT, p.file)
    if (existsSync(prof)) {
      const profile = JSON.parse(readFileSync(prof, 'utf8'))
      p.summary = summarizeProfile(profile, 25, autoWindow(profile))
      p.markdown = profileMarkdown(p.summary, 25)
      rewindowed = true
    }
  }
  report.notes.push(`rendered again from \`${relative(ROOT, file)}\` by \`node bench/run.mjs --render\` on ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC: same measurements${rewindowed ? '; the profile summarized over its automatically detected load window' : ''}`)
  const out = resolve(ROOT, opts.out)
  writeFileSync(out, renderMarkdown(report, { resultsDir: relative(ROOT, dirname(file)) }))
  process.stdout.write(consoleSummary(report) + '\n')
  process.stderr.write(`wrote ${opts.out}\n`)
}

/**
 * This process's threadpool was sized by the preload (bench/lib/threadpool.cjs);
 * children inherit the environment, so give them back the operator's own setting
 * and let each sidecar size its pool for the CPUs it runs on, as bin.cjs would.
 */
function restoreOperatorThreadpool () {
  const operator = process.env.HG_BENCH_UV_OPERATOR
  if (operator === undefined) return
  if (operator === '') delete process.env.UV_THREADPOOL_SIZE
  else process.env.UV_THREADPOOL_SIZE = operator
}

async function main () {
  restoreOperatorThreadpool()
  const opts = parseOptions()
  if (opts.render !== null) return render(opts)
  const runId = `${new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '')}-${randomBytes(2).toString('hex')}`
  const resultsDir = join(ROOT, 'bench', 'results', runId)
  mkdirSync(resultsDir, { recursive: true })
  const redisPrefix = `hg_bench_${runId.replace(/[^a-z0-9]/gi, '')}:`
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 })
  const databases = []
  const children = []
  const report = { opts, runId, notes: [], background: [] }

  let cleaning = null
  async function cleanup () {
    cleaning ??= (async () => {
      await Promise.allSettled(children.map(c => c.stop(5000)))
      killAll()
      for (const db of databases) {
        try { await db.pool.end() } catch {}
        try { await dropDatabase(db.name) } catch (err) { log(`could not drop ${db.name}: ${err.message}`) }
      }
      try {
        let cursor = '0'
        let deleted = 0
        do {
          const [next, keys] = await redis.scan(cursor, 'MATCH', `${redisPrefix}*`, 'COUNT', 1000)
          cursor = next
          if (keys.length > 0) deleted += await redis.del(...keys)
        } while (cursor !== '0')
        log(`cleanup: dropped ${databases.length} database(s), deleted ${deleted} Redis key(s) under ${redisPrefix}`)
      } catch (err) {
        log(`could not clean Redis: ${err.message}`)
      }
      redis.disconnect()
    })()
    return cleaning
  }
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.once(sig, () => {
      log(`${sig}: stopping`)
      cleanup().finally(() => process.exit(130))
    })
  }

  async function newDatabase (kind) {
    const db = await createDatabase(uniqueName(kind))
    databases.push(db)
    return db
  }

  function child (script, name, { cpus, nodeArgs = [], logs = true } = {}) {
    const c = startChild(script, { name, cpus, nodeArgs, logFile: logs ? logPath(resultsDir, name) : null })
    children.push(c)
    return c
  }

  async function stopChild (c) {
    await c.stop()
    const i = children.indexOf(c)
    if (i !== -1) children.splice(i, 1)
  }

  try {
    if (!existsSync(join(ROOT, 'dist', 'app.js'))) throw new Error('dist/ is missing: run `npm run build` (npm run bench does)')
    report.machine = await machineInfo(redis)
    if (opts.waitQuiet > 0) {
      const until = Date.now() + opts.waitQuiet * 1000
      const seen = []
      for (;;) {
        const sample = []
        await pauseSampling(3, sample)
        const busy = [sample[0]?.busy ?? 0]
        seen.push(busy[0])
        if (busy[0] < 25) break
        if (Date.now() > until) {
          report.notes.push(`the machine did not get quiet within --wait-quiet ${opts.waitQuiet} s (busy ${seen.map(b => b.toFixed(0)).join(', ')}%); measured anyway`)
          break
        }
        log(`waiting for a quiet machine: ${busy[0].toFixed(0)}% busy`)
      }
      report.quietWait = { seconds: (Date.now() - (until - opts.waitQuiet * 1000)) / 1000, samples: seen }
    }
    log(`machine: ${report.machine.cpuModel}, ${CORES} cores, ${report.machine.ramGiB.toFixed(0)} GiB; pinning ${PINNING ? `on (load generator: CPU ${CPU.load}; servers: CPU ${CPU.server})` : 'OFF (taskset missing or one core): everything unpinned'}`)
    log(`options: ${JSON.stringify({ ...opts, argv: undefined })}`)

    // --- signing cost of the identity assertion (issue 21), before anything else runs ------------
    if (!opts.expiryOnly) {
      const c = child(SERVER, 'assertion-cost', { cpus: CPU.server, nodeArgs: ['--require', THREADPOOL] })
      try {
        report.assertionCost = await c.call('assertion', { options: { overrides: { assertion: ASSERTION } } }, 120_000)
      } finally {
        await stopChild(c)
      }
      const a = report.assertionCost
      log(`assertion signing (median of ${a.batches} batches): fresh ${num(a.fresh.wallUs.median, 1)} µs (${num(a.fresh.cpuUs.median, 1)} µs CPU), reused ${num(a.reuse.us.median, 3)} µs, Ed25519 alone ${num(a.ed25519.us.median, 1)} µs`)
    }

    // --- processes that live for the whole run -------------------------------------------
    const loadgen = child(LOADGEN, 'loadgen', { cpus: CPU.load })
    const upstream = child(SERVER, 'upstream', { cpus: CPU.server })
    const up = await upstream.call('start', { role: 'upstream' }, 30_000)
    const upstreamUrl = `http://127.0.0.1:${up.port}`
    const baseline = child(SERVER, 'baseline', { cpus: CPU.server })
    const base = await baseline.call('start', { role: 'baseline', options: { upstream: upstreamUrl, connections: 128 } }, 30_000)

    const tokenLists = new Map()
    async function sendTokens (name, list) {
      tokenLists.set(name, list)
      await loadgen.call('tokens', { name, list })
    }
    function overrides ({ db, keyPrefix, auth = {}, logLevel = 'warn', assertion = undefined }) {
      return {
        ...(assertion === undefined ? {} : { assertion }),
        // Utilization shedding off: today's default, and for another build's dist/
        // (--expiry-before) too, whose default (0.98 since start) could shed a saturated
        // sidecar and measure that instead of the memo.
        server: { host: '127.0.0.1', port: 0, opsPort: 0, adminPort: 0, overload: { maxEventLoopUtilization: 0 } },
        upstream: { url: upstreamUrl },
        database: { url: db.url },
        redis: { url: REDIS_URL, keyPrefix: `${redisPrefix}${keyPrefix}:` },
        logLevel,
        auth: { bcryptCost: opts.cost, ...auth }
      }
    }
    /** Sends each token once (memo warm-up); every answer must be 200. */
    async function warm (sc, list, count = tokenLists.get(list).length) {
      const r = await loadgen.call('run', { spec: { port: sc.port, path: PATH, connections: 8, mode: 'once', tokens: list, count, expect: 200, timeout: 600 } })
      if (r.ok !== count) throw new Error(`warm-up of ${sc.name}: ${r.ok}/${count} answered 200 (${JSON.stringify(r.statuses)}, errors ${r.errors})`)
    }
    /**
     * A sidecar in its own process. With warm-up, it starts on all cores (the
     * bcrypt of the first use of each token goes twice as fast), then every
     * thread is re-pinned to the server core before anything is measured.
     */
    async function startSidecar (name, { cpus = CPU.server, warmList = null, nodeArgs = [], logs = true, dist, ...cfg }) {
      const warmFirst = warmList !== null && cpus !== CPU.all
      const c = child(SERVER, name, { cpus: warmFirst ? CPU.all : cpus, nodeArgs: ['--require', THREADPOOL, '--expose-gc', ...nodeArgs], logs })
      const info = await c.call('start', { role: 'sidecar', options: { overrides: overrides(cfg), dist } }, 60_000)
      c.port = info.port
      c.bcryptConcurrency = info.bcryptConcurrency
      c.backgroundConcurrency = info.backgroundConcurrency
      c.poolSize = info.poolSize
      c.threadpool = info.threadpool
      if (warmList !== null) {
        const t = Date.now()
        await warm(c, warmList)
        log(`  ${name}: memo warmed with ${tokenLists.get(warmList).length} tokens in ${((Date.now() - t) / 1000).toFixed(1)} s`)
        if (warmFirst) pin(c.pid, cpus)
      }
      return c
    }
    async function bcryptAlone (seconds) {
      const c = child(SERVER, 'bcrypt-alone', { cpus: CPU.all })
      try {
        return await c.call('bcrypt', { options: { cost: opts.cost, seconds } }, 120_000)
      } finally {
        await stopChild(c)
      }
    }
    function load (spec, extraS = 60) {
      return loadgen.call('run', { spec: { path: PATH, connections: opts.connections, ...spec } }, ((spec.duration ?? 60) + extraS) * 1000)
    }
    /** Unrecorded load right before a measurement with the same spec (--preload; see the report's Method). */
    async function preload (spec) {
      if (opts.preload > 0) await load({ ...spec, duration: opts.preload })
    }
    const expiryContext = { log, newDatabase, startSidecar, stopChild, load, sendTokens, CPU, pauseSampling: (s, key) => pauseSampling(s, report.background, key) }

    if (opts.expiryOnly) {
      report.expiry = await runExpiry(expiryContext, opts)
      report.elapsedSeconds = (Date.now() - started) / 1000
      writeFileSync(join(resultsDir, 'results.json'), JSON.stringify(report, null, 2))
      const out = resolve(ROOT, opts.out)
      mkdirSync(dirname(out), { recursive: true })
      writeFileSync(out, renderExpiryOnly(report, { resultsDir: relative(ROOT, resultsDir) }))
      log(`wrote ${opts.out} and ${relative(ROOT, join(resultsDir, 'results.json'))}`)
      return
    }

    // --- main database: N PATs, N API keys -------------------------------------------------
    const N = opts.tokens
    log(`seeding: ${N} PATs at bcrypt cost ${opts.cost} and ${N} API keys`)
    const main = await newDatabase('main')
    const world = makeWorld({ users: Math.ceil(N / 4), orgs: Math.min(20, Math.ceil(N / 50)) })
    await insertWorld(main.pool, world)
    let t0 = Date.now()
    // created within the last hour: newer than any filler of the scale databases.
    const hot = await mintPats(world, N, opts.cost, () => Math.random() * 3600, d => log(`  minted ${d}/${N}`))
    report.mintSeconds = (Date.now() - t0) / 1000
    await insertPats(main.pool, hot)
    const keys = mintApiKeys(world, N)
    await insertApiKeys(main.pool, keys)
    const mainShape = await prefixStats(main.pool)
    log(`  minted in ${report.mintSeconds.toFixed(1)} s; ${mainShape.prefixes} prefixes in use, ${num(mainShape.mean, 2)} candidates/prefix (max ${mainShape.max})`)
    await sendTokens('hot', hot.map(r => r.token))
    await sendTokens('keys', keys.map(r => r.token))

    // --- servers under test ----------------------------------------------------------------
    log('starting sidecars')
    const memoAuth = { memoTtlSeconds: 3600 }
    const hotSc = await startSidecar('sidecar-hot', { db: main, keyPrefix: 'hot', auth: memoAuth, warmList: 'hot' })
    // Signed x-hg-assertion on every request (issue 21): a key generated at start, default TTL 300 s.
    const assertSc = await startSidecar('sidecar-assertion', { db: main, keyPrefix: 'assert', auth: memoAuth, assertion: ASSERTION, warmList: 'hot' })
    const signed = (await assertSc.call('stats')).assertions
    if (!(signed > 0)) throw new Error(`sidecar-assertion signed no assertion during its warm-up (${signed})`)
    log(`  sidecar-assertion: ${signed} assertions signed and cached`)
    const infoSc = await startSidecar('sidecar-info-logs', { db: main, keyPrefix: 'info', auth: memoAuth, logLevel: 'info', logs: false, warmList: 'hot' })
    const floodSc = await startSidecar('sidecar-flood', { db: main, keyPrefix: 'flood', auth: { rateLimit: { maxFailures: 0 } } })
    const coldSc = await startSidecar('sidecar-cold', { db: main, keyPrefix: 'cold', auth: { memoTtlSeconds: 0 }, cpus: CPU.all })
    report.bcryptConcurrency = { hot: hotSc.bcryptConcurrency, cold: coldSc.bcryptConcurrency, threadpool: coldSc.threadpool }
    // database.poolSize as the sidecars' config resolved it (default.yaml plus the bench's overrides).
    report.sidecarConfig = { poolSize: hotSc.poolSize }

    const scenarios = [
      { key: 'upstream', label: 'upstream alone (node:http, no proxy)', port: up.port, tokens: 'hot', server: upstream },
      { key: 'baseline', label: 'no-auth proxy (@fastify/http-proxy) = 1.00', port: base.port, tokens: 'hot', server: baseline },
      { key: 'memo', label: 'memoized PAT', port: hotSc.port, tokens: 'hot', counter: hotSc, server: hotSc },
      { key: 'memoAssert', label: 'memoized PAT, signed identity assertion on', port: assertSc.port, tokens: 'hot', server: assertSc },
      { key: 'apikey', label: 'API key', port: hotSc.port, tokens: 'keys', counter: hotSc, server: hotSc },
      // The baseline again, right after the rows it is compared with: each round's
      // reference is the mean of the measurements before and after them, so a drift of
      // the shared machine during the round cancels out instead of landing on one side.
      { key: 'baselineAfter', label: 'no-auth proxy again (brackets the three rows above)', port: base.port, tokens: 'hot', server: baseline, hidden: true },
      { key: 'flood', label: `401 flood (malformed '${MALFORMED}')`, port: floodSc.port, token: MALFORMED, expect: 401, server: floodSc },
      { key: 'memoInfo', label: 'memoized PAT, info-level request logs', port: infoSc.port, tokens: 'hot', server: infoSc },
      { key: 'cold', label: 'cold PAT (memo off: bcrypt every request)', port: coldSc.port, tokens: 'hot', counter: coldSc, server: coldSc },
      { key: 'bcrypt', label: `bcrypt alone, cost ${opts.cost}, all cores`, bcrypt: true }
    ]
    const runs = Object.fromEntries(scenarios.map(s => [s.key, []]))

    // --- JIT warm-up: every server path runs a few seconds before anything is recorded ---
    const warmS = Math.min(5, opts.duration)
    log(`JIT warm-up: ${warmS} s per scenario, not recorded`)
    for (const s of scenarios) {
      if (s.bcrypt || s.hidden === true) continue
      await load({ port: s.port, duration: warmS, tokens: s.tokens, token: s.token, expect: s.expect ?? 200 })
      await sleep(opts.pause * 1000)
    }

    // --- interleaved rounds ----------------------------------------------------------------
    for (let r = 1; r <= opts.rounds; r++) {
      for (const s of scenarios) {
        let res
        if (s.bcrypt) {
          res = await bcryptAlone(Math.min(5, opts.duration))
          log(`round ${r}/${opts.rounds}  ${s.label.padEnd(48)} ${int(res.comparesPerSecond)} compares/s (one compare ${ms(res.compareMs)} ms)`)
        } else {
          await preload({ port: s.port, tokens: s.tokens, token: s.token, expect: s.expect ?? 200 })
          const before = s.counter === undefined ? null : await s.counter.call('stats')
          const names = ['postgres', 'redis-server']
          const cpu0 = { server: cpuMsOf(s.server.pid), upstream: cpuMsOf(upstream.pid), others: cpuSnapshot(names) }
          res = await load({ port: s.port, duration: opts.duration, tokens: s.tokens, token: s.token, expect: s.expect ?? 200 })
          const cpu1 = { server: cpuMsOf(s.server.pid), upstream: cpuMsOf(upstream.pid), others: cpuSnapshot(names) }
          // CPU per answered request, in microseconds (upstream counted once when it is the server).
          const us = ms => ms === null || res.total === 0 ? null : (ms * 1000) / res.total
          const diff = k => cpu0[k] === null || cpu1[k] === null ? null : cpu1[k] - cpu0[k]
          const others = cpuDelta(cpu0.others, cpu1.others, names)
          res.cpuUs = { server: us(diff('server')), upstream: s.server === upstream ? 0 : us(diff('upstream')), postgres: us(others.postgres), redis: us(others['redis-server']) }
          if (before !== null) {
            const after = await s.counter.call('stats')
            res.compares = after.compares - before.compares
            res.rejections = after.rejections - before.rejections
            res.comparesPerSecond = res.compares / res.durationS
            res.comparesPerRequest = res.ok === 0 ? null : res.compares / res.ok
            // Batching: answered requests per fresh-state query.
            const queries = (after.stateQueries ?? 0) - (before.stateQueries ?? 0)
            res.requestsPerStateQuery = queries > 0 ? res.ok / queries : null
          }
          log(`round ${r}/${opts.rounds}  ${s.label.padEnd(48)} ${int(res.rps).padStart(7)} req/s  p50 ${ms(res.p50)}  p99 ${ms(res.p99)} ms${res.total !== res.ok ? `  (${res.total - res.ok} unexpected: ${JSON.stringify(res.statuses)})` : ''}${res.errors > 0 ? `  errors ${res.errors}` : ''}`)
        }
        runs[s.key].push(res)
        await pauseSampling(opts.pause, report.background, s.key)
      }
    }
    report.scenarios = scenarios.filter(s => s.hidden !== true).map(s => ({ key: s.key, label: s.label, expect: s.expect ?? 200 }))
    report.runs = runs
    const sum = {}
    for (const s of scenarios) if (!s.bcrypt) sum[s.key] = summarizeRuns(runs[s.key])
    // The baseline row: both measurements of every round.
    sum.baseline = summarizeRuns([...runs.baseline, ...runs.baselineAfter])
    report.summary = sum
    const bcryptCps = median(runs.bcrypt.map(r => r.comparesPerSecond))
    const compareMs = median(runs.bcrypt.map(r => r.compareMs))
    report.bcrypt = { comparesPerSecond: bcryptCps, min: min(runs.bcrypt.map(r => r.comparesPerSecond)), max: max(runs.bcrypt.map(r => r.comparesPerSecond)), compareMs }
    const cold = {
      comparesPerSecond: median(runs.cold.map(r => r.comparesPerSecond)),
      comparesPerRequest: median(runs.cold.map(r => r.comparesPerRequest)),
      rejections: runs.cold.reduce((a, r) => a + r.rejections, 0)
    }
    report.cold = cold
    await Promise.all([stopChild(assertSc), stopChild(infoSc), stopChild(floodSc), stopChild(coldSc)])

    // --- event-loop stall check --------------------------------------------------------------
    // A sidecar with the memo on (all cores) serves a low-rate memoized probe,
    // first alone, then while a cold load of valid, never-used tokens makes
    // every one of its requests run bcrypt. Once with the default
    // bcryptConcurrency (one per core), once with one core left free.
    log('event-loop stall check: memoized probe alone, then alongside a cold-PAT load')
    {
      const D = opts.duration
      const db = await newDatabase('stall')
      const w = makeWorld({ users: 50, orgs: 5 })
      await insertWorld(db.pool, w)
      const variants = [{ key: 'default', label: `bcryptConcurrency 0 (= ${CORES}, one per core; the default)`, auth: {} }]
      if (CORES > 1) variants.push({ key: 'spare', label: `bcryptConcurrency ${CORES - 1} (one core left to the event loop)`, auth: { bcryptConcurrency: CORES - 1 } })
      const singleCount = Math.ceil(bcryptCps * (D + 1) * 1.5) + 64
      const total = 32 + singleCount * variants.length
      t0 = Date.now()
      const rows = await mintPats(w, total, opts.cost, () => Math.random() * 3600, d => log(`  minted ${d}/${total}`))
      await insertPats(db.pool, rows)
      log(`  ${total} tokens minted in ${((Date.now() - t0) / 1000).toFixed(1)} s`)
      await sendTokens('probe', rows.slice(0, 32).map(r => r.token))
      report.stall = { probeRate: 200, singleUseTokens: singleCount, variants: [] }
      for (const [i, v] of variants.entries()) {
        const list = `single${i}`
        await sendTokens(list, rows.slice(32 + i * singleCount, 32 + (i + 1) * singleCount).map(r => r.token))
        const sc = await startSidecar(`sidecar-stall-${v.key}`, { db, keyPrefix: `stall${i}`, auth: { ...memoAuth, ...v.auth }, cpus: CPU.all, warmList: 'probe' })
        const probe = { port: sc.port, connections: 4, overallRate: 200, duration: D, tokens: 'probe' }
        await sc.call('eld-start')
        const unloaded = await load(probe)
        const unloadedLoop = await sc.call('eld-stop')
        await sleep(opts.pause * 1000)
        const before = await sc.call('stats')
        const [coldRun, [loaded, loadedLoop]] = await Promise.all([
          load({ port: sc.port, duration: D + 1, tokens: list, mode: 'once' }),
          sleep(1000).then(async () => {
            await sc.call('eld-start')
            const r = await load(probe)
            return [r, await sc.call('eld-stop')]
          })
        ])
        const after = await sc.call('stats')
        await stopChild(sc)
        report.stall.variants.push({
          ...v,
          unloaded,
          loaded,
          unloadedLoop,
          loadedLoop,
          cold: coldRun,
          coldCompares: after.compares - before.compares,
          coldRejections: after.rejections - before.rejections,
          bcryptConcurrency: sc.bcryptConcurrency
        })
        log(`  ${v.label}: probe p99 ${ms(unloaded.p99)} ms alone, ${ms(loaded.p99)} ms under a cold load of ${int(coldRun.rps)} req/s (${coldRun.used ?? '?'} of ${singleCount} single-use tokens used); event-loop delay p99 ${ms(unloadedLoop.p99)} -> ${ms(loadedLoop.p99)} ms`)
      }
    }

    // --- guessing flood (issue 18) ----------------------------------------------------------------
    // 64 connections, each request on a new connection from a random 127.x.y.z
    // (so the per-address limit sees many clients), every one a fresh wrong
    // secret under a live prefix; meanwhile a second client sends valid tokens
    // that were never used (one bcrypt compare each) at a low rate. Its p99 is
    // compared with the same client's alone, on the same sidecar (memo on,
    // default limiter, all cores), with its own never-used tokens.
    log('guessing flood: 64 rotating-address connections of wrong secrets, and never-used valid tokens alongside')
    {
      const D = opts.floodDuration
      const rate = opts.floodValidRate
      const per = Math.ceil(rate * (D + 2)) + 16
      t0 = Date.now()
      const rows = await mintPats(world, 2 * per, opts.cost, () => Math.random() * 3600)
      await insertPats(main.pool, rows)
      log(`  ${2 * per} never-used tokens minted in ${((Date.now() - t0) / 1000).toFixed(1)} s`)
      await sendTokens('floodValidA', rows.slice(0, per).map(r => r.token))
      await sendTokens('floodValidB', rows.slice(per).map(r => r.token))
      const prefixes = [...new Set(hot.map(r => r.prefix))]
      await sendTokens('livePrefixes', prefixes)
      const flooder = child(LOADGEN, 'flooder', { cpus: CPU.load })
      await flooder.call('tokens', { name: 'livePrefixes', list: prefixes })
      const sc = await startSidecar('sidecar-flood', { db: main, keyPrefix: 'flood', auth: memoAuth, cpus: CPU.all })
      const valid = list => ({ port: sc.port, connections: 4, overallRate: rate, duration: D, tokens: list, mode: 'once', timeout: 60 })
      const s0 = await sc.call('stats')
      const unloaded = await load(valid('floodValidA'))
      const s1 = await sc.call('stats')
      await sleep(opts.pause * 1000)
      const s2 = await sc.call('stats')
      const [loaded, guesses] = await Promise.all([
        sleep(1000).then(() => load(valid('floodValidB'))),
        flooder.call('flood', { spec: { port: sc.port, path: PATH, connections: 64, duration: D + 2, prefixes: 'livePrefixes' } }, (D + 120) * 1000)
      ])
      const s3 = await sc.call('stats')
      await stopChild(flooder)
      await stopChild(sc)
      report.flood = {
        validRate: rate,
        seconds: D,
        connections: 64,
        livePrefixes: prefixes.length,
        unloaded,
        loaded,
        guesses,
        comparesUnloaded: s1.compares - s0.compares,
        comparesLoaded: s3.compares - s2.compares,
        rejectionsLoaded: s3.rejections - s2.rejections
      }
      log(`  valid never-used tokens: p99 ${ms(unloaded.p99)} ms alone, ${ms(loaded.p99)} ms under ${int(guesses.rps)} guesses/s (${JSON.stringify(guesses.statuses)}); valid answers ${JSON.stringify(loaded.statuses)}; compares ${report.flood.comparesLoaded} (${loaded.total} valid requests), bcrypt 503s ${report.flood.rejectionsLoaded}`)
    }

    // --- memo expiry under load ----------------------------------------------------------------
    if (opts.expiry) report.expiry = await runExpiry(expiryContext, opts)

    // --- memory --------------------------------------------------------------------------------
    report.memory = {}
    if (opts.hotSeconds > 0) {
      log(`memory: ${opts.hotSeconds} s memoized-PAT run`)
      const before = await hotSc.call('stats', { gc: true })
      const res = await load({ port: hotSc.port, duration: opts.hotSeconds, tokens: 'hot' })
      const afterRaw = await hotSc.call('stats')
      const after = await hotSc.call('stats', { gc: true })
      report.memory.hot = { seconds: opts.hotSeconds, rps: res.rps, p99: res.p99, before, afterRss: afterRaw.rss, after }
      log(`  RSS ${mb(before.rss)} -> ${mb(afterRaw.rss)} (${int(res.rps)} req/s)`)
    }
    if (opts.memoryTokens > 0) {
      const M = opts.memoryTokens
      log(`memory: ${M} distinct tokens (bcrypt cost 4) through a sidecar with memoMaxEntries ${opts.memoBound}`)
      const db = await newDatabase('mem')
      const w = makeWorld({ users: Math.ceil(M / 50), orgs: 20 })
      await insertWorld(db.pool, w)
      t0 = Date.now()
      const rows = await mintPats(w, M, 4, () => Math.random() * 3600, d => { if (d % 20000 === 0) log(`  minted ${d}/${M}`) })
      await insertPats(db.pool, rows)
      log(`  minted and inserted in ${((Date.now() - t0) / 1000).toFixed(1)} s`)
      // Rounds: the i-th token of every prefix list. Before each round the
      // prefix cache (Redis) is primed with just that round's token per prefix,
      // so each first use costs one cost-4 compare instead of ~k/2 (see Method).
      const byPrefix = new Map()
      for (const r of rows) {
        const l = byPrefix.get(r.prefix)
        if (l === undefined) byPrefix.set(r.prefix, [r])
        else l.push(r)
      }
      const roundsOf = []
      for (let i = 0; ; i++) {
        const round = []
        for (const l of byPrefix.values()) if (l[i] !== undefined) round.push(l[i])
        if (round.length === 0) break
        roundsOf.push(round)
      }
      const ordered = roundsOf.flat()
      await sendTokens('mem', ordered.map(r => r.token))
      const sc = await startSidecar('sidecar-memory', { db, keyPrefix: 'mem', auth: { ...memoAuth, memoMaxEntries: opts.memoBound }, cpus: CPU.all })
      const checkpoints = [{ tokens: 0, ...(await sc.call('stats', { gc: true })) }]
      const step = Math.max(1, Math.round(M / 4))
      let nextCheck = step
      let from = 0
      for (const round of roundsOf) {
        // Every token is tagged: its first use costs one cost-4 compare, whatever its list.
        const res = await loadgen.call('run', { spec: { port: sc.port, path: PATH, connections: 16, mode: 'once', tokens: 'mem', from, count: round.length, expect: 200, timeout: 60 } }, 600_000)
        if (res.ok !== round.length) throw new Error(`memory run: ${res.ok}/${round.length} answered 200 (${JSON.stringify(res.statuses)})`)
        from += round.length
        if (from >= nextCheck || from === M) {
          checkpoints.push({ tokens: from, ...(await sc.call('stats', { gc: true })) })
          log(`  ${from} tokens used: memo ${checkpoints.at(-1).memo} entries, RSS ${mb(checkpoints.at(-1).rss)}, heap ${mb(checkpoints.at(-1).heapUsed)}`)
          while (nextCheck <= from) nextCheck += step
        }
      }
      await stopChild(sc)
      report.memory.distinct = { tokens: M, bound: opts.memoBound, checkpoints, seconds: (Date.now() - t0) / 1000 }
    }

    // --- scale -----------------------------------------------------------------------------------
    if (opts.scale.length > 0) {
      log(`scale: ${opts.scale.join(', ')} tokens`)
      const fillerHash = await (await import(new URL('../dist/credentials/mint.js', import.meta.url))).hashPat('hg_pat_' + randomBytes(24).toString('hex'), opts.cost)
      const points = []
      for (const total of opts.scale) {
        if (total < N) {
          report.notes.push(`scale point ${total} skipped: below --tokens ${N}`)
          continue
        }
        // Untagged probes: real tokens inserted without a lookup tag, as if imported.
        const untaggedRows = await mintPats(world, 20, opts.cost, () => 86400 + Math.random() * 364 * 86400)
        if (total === N) {
          // The main database: its cold probes use the hot tokens themselves (memo off).
          const coldTokens = hot.slice(0, Math.min(60, N))
          await insertPats(main.pool, untaggedRows, { tagged: false })
          points.push({ total, db: main, shape: mainShape, sidecar: hotSc, coldRows: coldTokens, untaggedRows })
          continue
        }
        t0 = Date.now()
        const db = await newDatabase(`s${total}`)
        await insertWorld(db.pool, world)
        await insertPats(db.pool, hot)
        // Cold probes: real tokens created 1-365 days ago, like the fillers, so
        // they sit at uniform positions of their (newest-first) lists.
        const coldRows = await mintPats(world, 40, opts.cost, () => 86400 + Math.random() * 364 * 86400)
        await insertPats(db.pool, coldRows)
        await insertPats(db.pool, untaggedRows, { tagged: false })
        // Fillers untagged, as an imported table: the untagged probes pay today's walk;
        // they are tagged (as their first use would) before the tagged probes run.
        await insertFillers(db.pool, total - N - coldRows.length - untaggedRows.length, fillerHash)
        const shape = await prefixStats(db.pool)
        log(`  ${total}: seeded in ${((Date.now() - t0) / 1000).toFixed(1)} s; ${num(shape.mean, 1)} candidates/prefix (max ${shape.max})`)
        const sc = await startSidecar(`sidecar-hot-${total}`, { db, keyPrefix: `hot${total}`, auth: memoAuth, warmList: 'hot' })
        points.push({ total, db, shape, sidecar: sc, coldRows, untaggedRows })
      }
      for (const p of points) if (p.sidecar !== hotSc) await load({ port: p.sidecar.port, duration: Math.min(5, opts.scaleDuration), tokens: 'hot' })
      const scaleRuns = { baseline: [], ...Object.fromEntries(points.map(p => [p.total, []])) }
      for (let r = 1; r <= opts.scaleRounds; r++) {
        const order = [['baseline', base.port], ...points.map(p => [p.total, p.sidecar.port])]
        for (const [k, port] of order) {
          await preload({ port, tokens: 'hot' })
          const res = await load({ port, duration: opts.scaleDuration, tokens: 'hot' })
          scaleRuns[k].push(res)
          log(`scale round ${r}/${opts.scaleRounds}  ${String(k === 'baseline' ? 'no-auth proxy' : `memoized PAT @ ${int(k)}`).padEnd(28)} ${int(res.rps).padStart(7)} req/s  p99 ${ms(res.p99)} ms${res.total !== res.ok ? `  (${res.total - res.ok} unexpected)` : ''}`)
          await pauseSampling(opts.pause, report.background, `scale ${k}`)
        }
      }
      // Cold path cost per request: memo-off sidecars per point, on all cores,
      // each probe token used by one of two sequential clients. First the
      // untagged probes (today's cost: a walk of the prefix's untagged rows),
      // used twice (the first use writes the tag); then every other row is
      // tagged, and the tagged probes and a wrong secret run on a fresh cache.
      const agent = new http.Agent({ keepAlive: true, maxSockets: 4 })
      const budgetMs = opts.quick ? 4000 : 15_000
      const livePrefixes = [...new Set(hot.map(r => r.prefix))]
      await sendTokens('livePrefixes', livePrefixes)
      async function probe (sc, rows, count) {
        const before = await sc.call('stats')
        const lat = []
        let bad = 0
        let next = 0
        await Promise.all([0, 1].map(async () => {
          while (next < count) {
            const row = rows[next++]
            const res = await httpGet(agent, sc.port, row.token, 600_000)
            if (res.status === 200) lat.push(res.ms)
            else bad++
          }
        }))
        const after = await sc.call('stats')
        return { comparesPerRequest: (after.compares - before.compares) / count, latencyMedianMs: median(lat), latencyMaxMs: max(lat), non200: bad }
      }
      for (const p of points) {
        p.rss = (await p.sidecar.call('stats', { gc: true })).rss
        // 1. untagged probes: first use, then (tag written) second use
        const positions = await listPositions(p.db.pool, p.untaggedRows.map(r => r.id))
        const expectedU = p.untaggedRows.map(r => positions.get(r.id)?.pos ?? 1)
        const uCount = Math.max(4, Math.min(p.untaggedRows.length, Math.round((budgetMs * 2) / ((expectedU.reduce((a, b) => a + b, 0) / expectedU.length) * compareMs))))
        const usc = await startSidecar(`sidecar-untagged-${p.total}`, { db: p.db, keyPrefix: `untagged${p.total}`, auth: { memoTtlSeconds: 0 }, cpus: CPU.all })
        const first = await probe(usc, p.untaggedRows, uCount)
        const used = p.untaggedRows.slice(0, uCount).map(r => r.id)
        const tagDeadline = Date.now() + 60_000
        while ((await p.db.pool.query('SELECT count(*)::int AS n FROM personal_access_tokens WHERE id = ANY($1::uuid[]) AND lookup_tag IS NOT NULL', [used])).rows[0].n < uCount && Date.now() < tagDeadline) await sleep(100)
        await sleep(500)
        const second = await probe(usc, p.untaggedRows, uCount)
        await stopChild(usc)
        p.untagged = { requests: uCount, expectedCompares: expectedU.slice(0, uCount).reduce((a, b) => a + b, 0) / uCount, first, second }
        log(`  untagged @ ${int(p.total)}: first use ${num(first.comparesPerRequest, 1)} compares/request (expected ${num(p.untagged.expectedCompares, 1)}), median ${ms(first.latencyMedianMs)} ms; after: ${num(second.comparesPerRequest, 2)} compares/request, median ${ms(second.latencyMedianMs)} ms`)
        // 2. the rest of the table tagged, as the first use of every row would leave it
        p.tagSeconds = await tagRemaining(p.db.pool)
        log(`  tagged the remaining rows @ ${int(p.total)} in ${num(p.tagSeconds, 1)} s`)
        // 3. tagged probes, and one wrong secret under a live prefix
        const count = Math.max(4, Math.min(p.coldRows.length, Math.round((budgetMs * 2) / compareMs)))
        const sc = await startSidecar(`sidecar-cold-${p.total}`, { db: p.db, keyPrefix: `cold${p.total}`, auth: { memoTtlSeconds: 0 }, cpus: CPU.all })
        const tagged = await probe(sc, p.coldRows, count)
        const mid = await sc.call('stats')
        const wrongToken = p.coldRows[0].prefix + randomBytes(24).toString('hex').slice(0, 45)
        const wrong = await httpGet(agent, sc.port, wrongToken, 600_000)
        const after = await sc.call('stats')
        await stopChild(sc)
        p.cold = {
          requests: count,
          non200: tagged.non200,
          comparesPerRequest: tagged.comparesPerRequest,
          expectedCompares: 1,
          populationExpected: p.shape.expectedCompares,
          latencyMedianMs: tagged.latencyMedianMs,
          latencyMaxMs: tagged.latencyMaxMs,
          wrongStatus: wrong.status,
          wrongCompares: after.compares - mid.compares,
          wrongMs: wrong.ms,
          listLength: positions.get(p.untaggedRows[0].id)?.k ?? null
        }
        log(`  cold @ ${int(p.total)}: ${num(p.cold.comparesPerRequest, 2)} compares/request (tagged), median ${ms(p.cold.latencyMedianMs)} ms; wrong secret: ${p.cold.wrongCompares} compares, ${ms(wrong.ms)} ms -> ${wrong.status}`)
        // 4. a load of wrong secrets under live prefixes (fresh ones, so no negative memo
        // answers them; limiter off, as the 401 flood): their 401 rate against the
        // no-auth proxy measured right before, pinned alike.
        const wsc = await startSidecar(`sidecar-wrong-${p.total}`, { db: p.db, keyPrefix: `wrong${p.total}`, auth: { ...memoAuth, rateLimit: { maxFailures: 0, windowSeconds: 60 } } })
        await preload({ port: wsc.port, wrongUnder: 'livePrefixes', expect: 401 })
        await preload({ port: base.port, tokens: 'hot' })
        const baseRun = await load({ port: base.port, duration: opts.scaleDuration, tokens: 'hot' })
        await pauseSampling(opts.pause, report.background, `scale wrong ${p.total}`)
        const w0 = await wsc.call('stats')
        const wrongRun = await load({ port: wsc.port, duration: opts.scaleDuration, wrongUnder: 'livePrefixes', expect: 401 })
        const w1 = await wsc.call('stats')
        await stopChild(wsc)
        p.wrongLoad = { rps: wrongRun.rps, p99: wrongRun.p99, statuses: wrongRun.statuses, compares: w1.compares - w0.compares, baselineRps: baseRun.rps, vsBaseline: ratio(wrongRun.rps, baseRun.rps) }
        log(`  wrong secrets @ ${int(p.total)}: ${int(wrongRun.rps)} 401/s (${x(p.wrongLoad.vsBaseline)} the no-auth proxy's ${int(baseRun.rps)} req/s), p99 ${ms(wrongRun.p99)} ms, ${p.wrongLoad.compares} compares`)
      }
      agent.destroy()
      report.scale = {
        duration: opts.scaleDuration,
        rounds: opts.scaleRounds,
        baseline: summarizeRuns(scaleRuns.baseline),
        points: points.map(p => ({ total: p.total, shape: p.shape, memo: summarizeRuns(scaleRuns[p.total]), runs: scaleRuns[p.total], cold: p.cold, untagged: p.untagged, wrongLoad: p.wrongLoad, tagSeconds: p.tagSeconds, rss: p.rss }))
      }
      for (const p of points) if (p.sidecar !== hotSc) await stopChild(p.sidecar)
    }

    // --- targets ---------------------------------------------------------------------------------
    report.targets = evaluateTargets(report)
    const missed = report.targets.filter(t => t.pass !== true && t.pass !== null)

    // --- profile -----------------------------------------------------------------------------------
    if (opts.profile === 'always' || (opts.profile === 'auto' && missed.length > 0)) {
      log(`profiling the memoized-PAT load (${missed.length > 0 ? `missed: ${missed.map(t => t.id).join(', ')}` : '--profile'})`)
      const profDir = join(resultsDir, 'profile')
      mkdirSync(profDir, { recursive: true })
      const subset = hot.slice(0, Math.min(200, N))
      await sendTokens('prof', subset.map(r => r.token))
      const profDuration = Math.max(opts.duration, 10)
      /** Profiles one process under the memoized-PAT requests; only the measured window is summarized. */
      async function profiled (c, port, name) {
        await load({ port, duration: Math.min(5, profDuration), tokens: 'prof' })
        const from = await c.call('now')
        const res = await load({ port, duration: profDuration, tokens: 'prof' })
        const to = await c.call('now')
        await stopChild(c)
        const file = join(profDir, `${name}.cpuprofile`)
        if (!existsSync(file)) {
          report.notes.push(`profile: no ${name}.cpuprofile written (${readdirSync(profDir).join(', ')})`)
          return null
        }
        const summary = summarizeProfile(JSON.parse(readFileSync(file, 'utf8')), 25, { from, to })
        return { file: relative(ROOT, file), rps: res.rps, requests: res.total, summary }
      }
      const cpuProf = name => ['--cpu-prof', `--cpu-prof-dir=${profDir}`, `--cpu-prof-name=${name}.cpuprofile`]
      const bc = child(SERVER, 'baseline-profile', { cpus: CPU.server, nodeArgs: cpuProf('baseline') })
      const bp = await bc.call('start', { role: 'baseline', options: { upstream: upstreamUrl, connections: 128 } }, 30_000)
      const baseProfile = await profiled(bc, bp.port, 'baseline')
      const sc = await startSidecar('sidecar-profile', { db: main, keyPrefix: 'prof', auth: memoAuth, warmList: 'prof', nodeArgs: cpuProf('sidecar-memo') })
      const sideProfile = await profiled(sc, sc.port, 'sidecar-memo')
      if (sideProfile !== null) {
        report.profile = { ...sideProfile, markdown: profileMarkdown(sideProfile.summary, 25), baseline: baseProfile }
        log(`  profiles written to ${relative(ROOT, profDir)} (${int(sideProfile.rps)} req/s sidecar, ${baseProfile === null ? '-' : int(baseProfile.rps)} req/s baseline under the profiler)`)
      }
    }

    report.elapsedSeconds = (Date.now() - started) / 1000
    writeFileSync(join(resultsDir, 'results.json'), JSON.stringify(report, null, 2))
    const md = renderMarkdown(report, { resultsDir: relative(ROOT, resultsDir) })
    const out = resolve(ROOT, opts.out)
    mkdirSync(dirname(out), { recursive: true })
    writeFileSync(out, md)
    process.stdout.write('\n' + consoleSummary(report) + '\n')
    log(`wrote ${opts.out} and ${relative(ROOT, join(resultsDir, 'results.json'))}`)
  } finally {
    await cleanup()
  }
}

/**
 * Pass/fail of the issue's five targets. Each ratio is read two ways: ratio
 * of the medians, and median of the per-round ratios (each round's pair was
 * measured back to back). Both pass: pass; both fail: fail; they disagree:
 * 'borderline' (the target sits inside this run's noise).
 */
function evaluateTargets (report) {
  const s = report.summary
  const t = []
  const paired = (as, bs, field = 'rps') => as.map((a, i) => ratio(a[field], bs[i]?.[field] ?? null)).filter(v => v !== null)
  const fmt = list => list.map(v => v.toFixed(2)).join(', ')
  const judge = (...checks) => checks.every(c => c) ? true : checks.every(c => !c) ? false : 'borderline'
  const both = (ofMedians, rounds, ok) => judge(ok(ofMedians), ok(median(rounds)))
  const describe = (ofMedians, rounds) => `${x(ofMedians)} (ratio of medians; per round ${fmt(rounds)}, median ${x(median(rounds))})`

  // Each round's reference: the mean of its two baseline measurements when the run has
  // them (they bracket the memoized-PAT and API-key rows), else its one baseline.
  const after = report.runs.baselineAfter
  const baseRounds = after === undefined
    ? report.runs.baseline
    : report.runs.baseline.map((b, i) => after[i] === undefined ? b : { rps: (b.rps + after[i].rps) / 2, p99: (b.p99 + after[i].p99) / 2 })
  const memoRatio = ratio(s.memo.rps, s.baseline.rps)
  const memoRounds = paired(report.runs.memo, baseRounds)
  const p99Ratio = ratio(s.memo.p99, s.baseline.p99)
  const p99Rounds = paired(report.runs.memo, baseRounds, 'p99')
  const t1rps = both(memoRatio, memoRounds, v => v >= 0.6)
  const t1p99 = both(p99Ratio, p99Rounds, v => v <= 2)
  t.push({
    id: 'T1',
    text: "Memoized PAT >= 0.60x the no-auth proxy's req/s, p99 <= 2x the baseline's p99",
    measured: `req/s ${describe(memoRatio, memoRounds)}; p99 ${ms(s.memo.p99)} vs ${ms(s.baseline.p99)} ms = ${x(p99Ratio)} (per round ${fmt(p99Rounds)})`,
    pass: t1rps === true && t1p99 === true ? true : t1rps === false || t1p99 === false ? false : 'borderline',
    parts: { 'req/s': t1rps, p99: t1p99 }
  })
  const akRatio = ratio(s.apikey.rps, s.memo.rps)
  const akRounds = paired(report.runs.apikey, report.runs.memo)
  t.push({ id: 'T2', text: 'API key >= memoized PAT', measured: `${describe(akRatio, akRounds)}: ${int(s.apikey.rps)} vs ${int(s.memo.rps)} req/s`, pass: both(akRatio, akRounds, v => v >= 1) })

  const coldRatio = ratio(report.cold.comparesPerSecond, report.bcrypt.comparesPerSecond)
  const coldRounds = paired(report.runs.cold.map(r => ({ v: r.comparesPerSecond })), report.runs.bcrypt.map(r => ({ v: r.comparesPerSecond })), 'v')
  const st = report.stall?.variants[0]
  const stallRatio = st === undefined ? null : ratio(st.loaded.p99, st.unloaded.p99)
  const t3thr = both(coldRatio, coldRounds, v => v >= 0.9)
  const t3stall = stallRatio !== null && stallRatio < 3
  t.push({
    id: 'T3',
    text: 'Cold PAT >= 0.9x of what bcrypt alone allows (compares/s, all cores), no event-loop stall (memoized p99 under load < 3x unloaded)',
    measured: `${int(s.cold.rps)} req/s x ${num(report.cold.comparesPerRequest, 2)} compares/request = ${int(report.cold.comparesPerSecond)} compares/s vs bcrypt alone ${int(report.bcrypt.comparesPerSecond)}/s: ${describe(coldRatio, coldRounds)}; stall: probe p99 ${ms(st?.unloaded.p99)} -> ${ms(st?.loaded.p99)} ms = ${x(stallRatio)}`,
    pass: t3thr === true && t3stall ? true : t3thr === false || !t3stall ? false : 'borderline',
    parts: { throughput: t3thr, stall: t3stall }
  })
  const floodRatio = ratio(s.flood.rps, s.baseline.rps)
  const floodRounds = paired(report.runs.flood, baseRounds)
  t.push({ id: 'T4', text: "401 flood of malformed tokens >= 1.0x the no-auth proxy's req/s", measured: `${describe(floodRatio, floodRounds)}: ${int(s.flood.rps)} vs ${int(s.baseline.rps)} req/s`, pass: both(floodRatio, floodRounds, v => v >= 1) })
  const sc = report.scale
  if (sc !== undefined && sc.points.length >= 2) {
    const lo = sc.points[0]
    const hi = sc.points.at(-1)
    const r = ratio(hi.memo.rps, lo.memo.rps)
    const rounds = paired(hi.runs, lo.runs)
    t.push({ id: 'T5', text: `Memoized-PAT req/s at ${int(hi.total)} tokens >= 0.9x of that at ${int(lo.total)}`, measured: `${describe(r, rounds)}: ${int(hi.memo.rps)} vs ${int(lo.memo.rps)} req/s`, pass: both(r, rounds, v => v >= 0.9) })
  } else {
    t.push({ id: 'T5', text: 'Memoized-PAT req/s at 1,000,000 tokens >= 0.9x of that at 1,000', measured: '- (run with --scale 1000,100000,1000000)', pass: null })
  }
  if (s.memoAssert !== undefined) {
    const r = ratio(s.memoAssert.rps, s.baseline.rps)
    const rounds = paired(report.runs.memoAssert, baseRounds)
    t.push({
      id: 'T6',
      text: "Memoized PAT with the signed identity assertion on >= 0.55x the no-auth proxy's req/s",
      measured: `${describe(r, rounds)}: ${int(s.memoAssert.rps)} vs ${int(s.baseline.rps)} req/s (assertion off: ${int(s.memo.rps)}, ${x(ratio(s.memo.rps, s.baseline.rps))})`,
      pass: both(r, rounds, v => v >= 0.55)
    })
  }
  if (sc !== undefined && sc.points.every(pt => pt.cold !== undefined && pt.wrongLoad !== undefined)) {
    const hi = sc.points.at(-1)
    const tagged = sc.points.every(pt => Math.abs(pt.cold.comparesPerRequest - 1) <= 0.05)
    const wrong = sc.points.every(pt => pt.cold.wrongCompares === 0 && pt.wrongLoad.compares === 0)
    const rate = hi.wrongLoad.vsBaseline !== null && hi.wrongLoad.vsBaseline >= 1
    const untagged = sc.points.every(pt => pt.untagged === undefined || Math.abs(pt.untagged.second.comparesPerRequest - 1) <= 0.05)
    t.push({
      id: 'T7',
      text: 'Cold tagged PAT: 1.0 (+-0.05) compares/request at every size; wrong secret under a live prefix: 0 compares, 401 rate >= 1.0x the no-auth proxy at the largest size; untagged rows: 1 compare after their first use',
      measured: `${sc.points.map(pt => `${int(pt.total)}: ${num(pt.cold.comparesPerRequest, 2)} tagged, ${pt.cold.wrongCompares + pt.wrongLoad.compares} wrong-secret compares, untagged ${num(pt.untagged?.first.comparesPerRequest, 1)} -> ${num(pt.untagged?.second.comparesPerRequest, 2)}`).join('; ')}; wrong-secret 401s at ${int(hi.total)}: ${x(hi.wrongLoad.vsBaseline)}`,
      pass: tagged && wrong && rate && untagged
    })
  }
  const fl = report.flood
  if (fl !== undefined) {
    const r = ratio(fl.loaded.p99, fl.unloaded.p99)
    const all200 = fl.loaded.ok === fl.loaded.total && fl.loaded.total > 0
    const no503 = (fl.loaded.statuses['503'] ?? 0) === 0
    t.push({
      id: 'T8',
      text: 'Guessing flood: never-used valid tokens all 200, their p99 within 2x of the unloaded cold p99, no 503',
      measured: `p99 ${ms(fl.unloaded.p99)} -> ${ms(fl.loaded.p99)} ms = ${x(r)}; ${fl.loaded.ok}/${fl.loaded.total} answered 200, ${fl.loaded.statuses['503'] ?? 0} x 503; ${int(fl.guesses.rps)} guesses/s`,
      pass: r !== null && r <= 2 && all200 && no503
    })
  }
  return t
}

function consoleSummary (report) {
  const s = report.summary
  const base = s.baseline.rps
  const rows = report.scenarios.filter(sc => sc.key !== 'bcrypt').map(sc => {
    const v = s[sc.key]
    return [sc.label, `${int(v.rps)} [${int(v.rpsMin)}-${int(v.rpsMax)}]`, ms(v.p50), ms(v.p99), x(ratio(v.rps, base)), v.unexpected > 0 ? `${v.unexpected} unexpected` : '']
  })
  rows.push([`bcrypt alone (cost ${report.opts.cost}, all cores)`, `${int(report.bcrypt.comparesPerSecond)} compares/s`, ms(report.bcrypt.compareMs), '', '', ''])
  const lines = [textTable(['scenario', 'req/s median [min-max]', 'p50 ms', 'p99 ms', 'vs baseline', ''], rows), '']
  const a = report.assertionCost
  if (a !== undefined) {
    lines.push(`identity assertion, µs each (median of ${a.batches} batches): fresh signature ${num(a.fresh.wallUs.median, 1)} (${num(a.fresh.cpuUs.median, 1)} CPU), reuse ${num(a.reuse.us.median, 3)}; Ed25519 sign alone (node:crypto) ${num(a.ed25519.us.median, 1)}`, '')
  }
  for (const t of report.targets) lines.push(`${t.pass === null ? 'N/A ' : t.pass === 'borderline' ? 'BORD' : t.pass ? 'PASS' : 'FAIL'}  ${t.id} ${t.text}: ${t.measured}`)
  if (report.scale !== undefined) {
    lines.push('')
    lines.push(textTable(['tokens', 'cand./prefix', 'memo req/s', 'p99 ms', 'cold compares/req (tagged)', 'cold ms/req', 'untagged: 1st use / after', 'wrong secret: compares, 401/s vs no-auth'],
      report.scale.points.map(p => [int(p.total), num(p.shape.mean, 1), `${int(p.memo.rps)} [${int(p.memo.rpsMin)}-${int(p.memo.rpsMax)}]`, ms(p.memo.p99), num(p.cold?.comparesPerRequest, 2), ms(p.cold?.latencyMedianMs),
        p.untagged === undefined ? '-' : `${num(p.untagged.first.comparesPerRequest, 1)} / ${num(p.untagged.second.comparesPerRequest, 2)}`,
        p.wrongLoad === undefined ? '-' : `${p.cold?.wrongCompares ?? '-'} + ${p.wrongLoad.compares}, ${int(p.wrongLoad.rps)} (${x(p.wrongLoad.vsBaseline)})`])))
  }
  const fl = report.flood
  if (fl !== undefined) {
    lines.push('', `guessing flood: ${int(fl.guesses.rps)} guesses/s ${JSON.stringify(fl.guesses.statuses)}; never-used valid tokens p99 ${ms(fl.unloaded.p99)} ms alone -> ${ms(fl.loaded.p99)} ms (${x(ratio(fl.loaded.p99, fl.unloaded.p99))}), answers ${JSON.stringify(fl.loaded.statuses)}, 503s ${fl.loaded.statuses['503'] ?? 0}`)
  }
  if (report.memory.hot !== undefined) lines.push('', `RSS after ${report.memory.hot.seconds} s hot: ${mb(report.memory.hot.afterRss)} (before ${mb(report.memory.hot.before.rss)})`)
  const d = report.memory.distinct
  if (d !== undefined) {
    const last = d.checkpoints.at(-1)
    lines.push(`after ${int(d.tokens)} distinct tokens (memoMaxEntries ${int(d.bound)}): memo ${int(last.memo)} entries, RSS ${mb(last.rss)}, heap ${mb(last.heapUsed)}`)
  }
  if (report.profile !== undefined) {
    lines.push('', 'profile (memoized PAT), top self time:')
    for (const f of report.profile.summary.functions.slice(0, 12)) lines.push(`  ${f.pct.toFixed(1).padStart(5)}%  ${f.name}`)
  }
  return lines.join('\n')
}

main().catch(err => {
  process.stderr.write(`bench failed: ${err?.stack ?? err}\n`)
  killAll()
  process.exit(1)
})
