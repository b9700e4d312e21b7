// "Memo expiry under load" (issue 23): every token primed at once, a short memo
// TTL, and a run at full load that crosses at least two expiries. Measures the
// bcrypt compares of each expiry wave (one per token is the floor), the latency
// over the run against the same scenario with a memo that never expires, and the
// 503s. With --expiry-before, the same variants run on another build's dist/
// (the code before the change) for a before/after comparison.
import bcrypt from 'bcrypt'
import { timeCompare } from './bcrypt-time.mjs'
import { pin } from './proc.mjs'
import { insertPats, insertWorld, makeWorld, mintPats } from './seed.mjs'
import { int, ms, num, ratio, x } from './stats.mjs'

const NEVER = 86_400
/** Seconds without a compare that separate two waves. */
const WAVE_GAP_S = 3

const sleep = t => new Promise(resolve => setTimeout(resolve, t))

/**
 * Waves of bcrypt work from cumulative compare samples: maximal runs of
 * intervals with compares, split where none happened for WAVE_GAP_S seconds.
 * A wave still running at the end of the samples is partial.
 */
export function waves (samples) {
  const out = []
  let cur = null
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1]
    const b = samples[i]
    const n = b.compares - a.compares
    if (n <= 0) continue
    if (cur !== null && a.t - cur.to <= WAVE_GAP_S) {
      cur.to = b.t
      cur.compares += n
    } else {
      cur = { from: a.t, to: b.t, compares: n }
      out.push(cur)
    }
  }
  const end = samples.at(-1)?.t ?? 0
  for (const w of out) w.partial = end - w.to < WAVE_GAP_S
  return out
}

export async function runExpiry (ctx, opts) {
  const { log, newDatabase, startSidecar, stopChild, load, sendTokens, pauseSampling, CPU } = ctx
  const N = opts.expiryTokens
  const ttl = opts.expiryTtl
  const D = opts.expiryDuration
  const cost = opts.expiryCost

  log(`memo expiry under load: ${N} tokens at bcrypt cost ${cost}, memo TTL ${ttl} s, ${D} s at ${opts.connections} connections`)
  const db = await newDatabase('expiry')
  const world = makeWorld({ users: Math.ceil(N / 4), orgs: Math.min(20, Math.ceil(N / 50)) })
  await insertWorld(db.pool, world)
  const rows = await mintPats(world, N, cost, () => Math.random() * 3600)
  await insertPats(db.pool, rows)
  await sendTokens('expiry', rows.map(r => r.token))
  // For the report's reason for the low cost: one compare at this cost and at the rest of the bench's.
  const compareMs = async (c, n) => (await timeCompare(bcrypt, 'hg_pat_' + 'cd'.repeat(24), c, n)).ms
  const compare = { [cost]: await compareMs(cost, 9), [opts.cost]: await compareMs(opts.cost, 5) }

  const variants = [
    { key: 'afterNever', code: 'this build', ttl: NEVER },
    { key: 'after', code: 'this build', ttl },
    ...(opts.expiryBefore === null
      ? []
      : [
          { key: 'beforeNever', code: 'before', ttl: NEVER, dist: opts.expiryBefore },
          { key: 'before', code: 'before', ttl, dist: opts.expiryBefore }
        ])
  ]
  const results = []
  for (const [i, v] of variants.entries()) {
    await pauseSampling(3, `expiry ${v.key}`)
    // Started on all cores so that the priming's bcrypt goes as fast as it can
    // (the tokens are primed "at once"), then pinned like the memoized-PAT sidecar.
    const sc = await startSidecar(`sidecar-expiry-${v.key}`, { db, keyPrefix: `expiry${i}`, auth: { memoTtlSeconds: v.ttl, bcryptCost: cost }, dist: v.dist, cpus: CPU.all })
    const t0 = performance.now()
    const sample = async () => ({ t: (performance.now() - t0) / 1000, compares: (await sc.call('compares')).compares })
    const samples = [await sample()]
    // A token refused while priming (load shedding on a busy machine) is sent again:
    // the primed ones are memo hits by then and cost nothing.
    const primeStatuses = []
    for (let pass = 1; ; pass++) {
      const prime = await load({ port: sc.port, connections: opts.connections, mode: 'once', tokens: 'expiry', count: N, timeout: 600 }, 600)
      primeStatuses.push(prime.statuses)
      if (prime.ok === N) break
      if (pass === 3) throw new Error(`priming ${sc.name}: ${prime.ok}/${N} answered 200 (${JSON.stringify(primeStatuses)})`)
    }
    const primeSeconds = (performance.now() - t0) / 1000
    pin(sc.pid, CPU.server)
    const before = await sc.call('stats')
    samples.push(await sample())
    const loadStart = samples.at(-1).t
    const state = { sampling: true }
    const sampler = (async () => {
      while (state.sampling) {
        await sleep(1000)
        samples.push(await sample())
      }
    })()
    const res = await load({ port: sc.port, duration: D, tokens: 'expiry', timeline: true })
    state.sampling = false
    await sampler
    const after = await sc.call('stats')
    await stopChild(sc)

    const inLoad = samples.filter(s => s.t >= loadStart)
    const worst = res.timeline.filter(b => b.p99 !== null).reduce((w, b) => w === null || b.p99 > w.p99 ? b : w, null)
    const r = {
      ...v,
      bcryptConcurrency: sc.bcryptConcurrency,
      backgroundConcurrency: sc.backgroundConcurrency ?? null,
      primeSeconds,
      primeStatuses,
      loadStart,
      rps: res.rps,
      ok: res.ok,
      total: res.total,
      statuses: res.statuses,
      errors: res.errors,
      timeouts: res.timeouts,
      p50: res.p50,
      p99: res.p99,
      p999: res.p999,
      max: res.max,
      worstSecond: worst,
      timeline: res.timeline,
      compares: after.compares - before.compares,
      rejections: after.rejections - before.rejections,
      overloaded: (after.overloaded ?? 0) - (before.overloaded ?? 0),
      shared: after.shared === null ? null : after.shared - (before.shared ?? 0),
      refreshes: Object.fromEntries(Object.entries(after.refreshes ?? {}).map(([k, n]) => [k, n - (before.refreshes?.[k] ?? 0)])),
      samples,
      waves: waves(inLoad)
    }
    results.push(r)
    log(`  ${v.code}, TTL ${v.ttl === NEVER ? 'never' : `${v.ttl} s`}: primed in ${primeSeconds.toFixed(1)} s; ${int(r.rps)} req/s, p99 ${ms(r.p99)} ms, max ${ms(r.max)} ms, 503s ${r.statuses[503] ?? 0} (bcrypt ${r.rejections}, shedding ${r.overloaded}); ${r.compares} compares, waves ${r.waves.map(w => `${w.compares}@${w.from.toFixed(0)}-${w.to.toFixed(0)}s${w.partial ? '(partial)' : ''}`).join(' ') || '-'}`)
  }
  return { tokens: N, ttl, duration: D, cost, referenceCost: opts.cost, compareMs: compare, connections: opts.connections, before: opts.expiryBefore, variants: results, targets: expiryTargets(N, results) }
}

/** The issue's three criteria, on this build's variants. */
export function expiryTargets (tokens, variants) {
  const by = Object.fromEntries(variants.map(v => [v.key, v]))
  const a = by.after
  const ref = by.afterNever
  if (a === undefined || ref === undefined) return []
  const complete = a.waves.filter(w => !w.partial)
  const within = complete.length >= 2 && complete.every(w => Math.abs(w.compares - tokens) <= 0.05 * tokens)
  const p99 = ratio(a.p99, ref.p99)
  const unavailable = a.statuses[503] ?? 0
  return [
    { id: 'E1', text: 'bcrypt compares per expiry wave within 5 % of the token count (at least two complete waves)', measured: `${complete.map(w => int(w.compares)).join(', ') || 'no complete wave'} for ${int(tokens)} tokens`, pass: within },
    { id: 'E2', text: 'p99 over the run within 2x of the same scenario with a memo that never expires', measured: `${ms(a.p99)} vs ${ms(ref.p99)} ms = ${x(p99)}`, pass: p99 !== null && p99 <= 2 },
    { id: 'E3', text: 'zero 503s', measured: `${unavailable} (bcrypt queue full: ${a.rejections}; load shedding: ${a.overloaded})`, pass: unavailable === 0 }
  ]
}

/**
 * Why this section's tokens use a lower bcrypt cost than the rest of the report,
 * from this run's numbers. `reference` (full runs): the cost, one compare's ms and
 * the bcrypt concurrency of the rest of the report, for results that predate the
 * section's own measurement. `machine`: the run's cores and whether servers were pinned.
 */
function costReason (e, reference, machine) {
  const refCost = e.referenceCost ?? reference?.cost
  if (refCost === undefined || e.cost >= refCost) return null
  const after = e.variants.find(v => v.key === 'after')
  const refMs = (reference?.cost === refCost ? reference.compareMs : null) ?? e.compareMs?.[refCost] ?? null
  const ownMs = e.compareMs?.[e.cost] ?? (refMs === null ? null : refMs / 2 ** (refCost - e.cost))
  const conc = after?.bcryptConcurrency ?? reference?.concurrency ?? null
  // Before it was recorded: the pool's default, half the concurrency, at least 1 (src/auth/bcrypt-pool.ts).
  const bg = after?.backgroundConcurrency ?? (conc === null ? null : Math.max(1, Math.floor(conc / 2)))
  const N = e.tokens
  const window = 0.2 * e.ttl
  const tail = 'E1 counts compares, whatever each costs. E2 (p99 ratio) and E3 (503s) are about requests that wait for a compare, and none waits while every entry is renewed before it expires: as long as a wave fits in that window, the cost changes only the CPU a wave takes from the event loop on the same core, which E2\'s p99 includes.'
  if (refMs === null || conc === null) {
    return `Why bcrypt cost ${e.cost}, not ${refCost} like the rest of this report: each step of cost doubles a compare (${2 ** (refCost - e.cost)}x from ${e.cost} to ${refCost}). Refresh ahead renews an entry in the background during the last 20 % of its life (~${num(window, 0)} s of a ${e.ttl}-s TTL), a few compares at a time; the priming must take a small part of the TTL and each wave of ${int(N)} renewals must fit in that window, or the run measures a sidecar with no CPU to spare instead of the memo's expiry behaviour (this run did not record the compare times to show it). ${tail}`
  }
  const cores = machine?.nproc ?? conc
  // After priming the sidecar has one core when pinned: background compares beyond one share it.
  const lanes = Math.min(bg, machine?.pinning === true ? 1 : cores)
  const prime = (N * refMs) / Math.min(conc, cores) / 1000
  const wave = (N * refMs) / lanes / 1000
  const ownWave = (N * ownMs) / lanes / 1000
  const complete = (after?.waves ?? []).filter(w => !w.partial).map(w => w.to - w.from)
  return `Why bcrypt cost ${e.cost}, not ${refCost} like the rest of this report: one compare takes ${ms(refMs)} ms at cost ${refCost} here, ${ms(ownMs)} ms at cost ${e.cost}. ` +
    `At cost ${refCost}, priming ${int(N)} tokens would keep the sidecar's ${conc} compare slots busy for at least ${num(prime, 0)} s, ${num((100 * prime) / e.ttl, 0)} % of the ${e.ttl}-s TTL, so the entries would not be primed at once (their expiries would spread over most of a TTL instead of coming as one wave); ` +
    `and a wave of renewals, which refresh ahead runs ${bg} at a time in the background (\`backgroundConcurrency\`)${machine?.pinning === true ? ' on the one core the sidecar is pinned to after priming' : ''}, would need at least ${num(wave, 0)} s, against ~${num(window, 0)} s for each entry between its refresh point (80 % of its +-10 % jittered TTL) and its expiry. ` +
    'The renewals could not keep up: entries would expire under their requests, and the run would measure a sidecar with no CPU to spare, not the memo\'s expiry behaviour. ' +
    `At cost ${e.cost} a wave needs at least ${num(ownWave, 1)} s of compares${complete.length === 0 ? '' : ` (the complete waves in the table lasted ${complete.map(d => num(d, 0)).join(' and ')} s, their compares sharing the core with the event loop under load)`}. ${tail}`
}

/** The section of docs/BENCHMARKS.md. */
export function expiryMarkdown (e, { mdTable, verdict, reference, machine }) {
  const out = []
  const p = (...lines) => out.push(...lines)
  const label = v => `${v.code === 'before' ? 'before (no single flight, refresh ahead or jitter)' : 'this build'}, memo TTL ${v.ttl === NEVER ? 'never expires' : `${v.ttl} s`}`
  p('## Memo expiry under load', '')
  p(`${int(e.tokens)} tokens (bcrypt cost ${e.cost}) primed at once: each sent once over ${e.connections} connections to a fresh sidecar on all cores, which is then pinned to the server core like the memoized-PAT sidecar; right after, ${e.connections} connections cycle through all tokens for ${e.duration} s. With a memo TTL of ${e.ttl} s the run crosses at least two expiries of every entry; the same scenario with a memo that never expires is the reference. Compares are the sidecar's bcrypt pool counter, sampled every second; a wave is a run of seconds with compares, ended by ${WAVE_GAP_S} s without any (a wave still running when the load stopped is partial). "Worst second": the highest p99 of any one second of the run.`, '')
  const rows = e.variants.map(v => [
    label(v),
    `${v.primeSeconds.toFixed(1)} s`,
    int(v.rps),
    ms(v.p50),
    ms(v.p99),
    ms(v.p999),
    ms(v.max),
    v.worstSecond === null ? '-' : `${ms(v.worstSecond.p99)} (s ${v.worstSecond.second})`,
    `${v.statuses[503] ?? 0}${(v.statuses[503] ?? 0) > 0 ? ` (bcrypt ${v.rejections}, shedding ${v.overloaded})` : ''}`,
    int(v.compares),
    v.waves.length === 0 ? '-' : v.waves.map(w => `${int(w.compares)} (${(w.from - v.loadStart).toFixed(0)}-${(w.to - v.loadStart).toFixed(0)} s${w.partial ? ', partial' : ''})`).join('; '),
    v.shared === null ? '-' : int(v.shared),
    Object.keys(v.refreshes ?? {}).length === 0 ? '-' : Object.entries(v.refreshes).map(([k, n]) => `${k} ${int(n)}`).join(', ')
  ])
  const reason = costReason(e, reference, machine)
  if (reason !== null) p(reason, '')
  p(mdTable(['variant', 'priming', 'req/s', 'p50 ms', 'p99 ms', 'p99.9 ms', 'max ms', 'worst second p99 ms', '503s', 'compares', 'compares per wave (seconds into the load)', 'shared', 'refreshes'], rows, ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'l', 'r', 'l']), '')
  for (const t of e.targets) p(`- ${t.id}. ${t.text}: ${verdict(t.pass)}. Measured ${t.measured}.`)
  const before = e.variants.find(v => v.key === 'before')
  const beforeRef = e.variants.find(v => v.key === 'beforeNever')
  if (before !== undefined && beforeRef !== undefined) {
    p(`- Before the change, the same run: p99 ${ms(before.p99)} vs ${ms(beforeRef.p99)} ms = ${x(ratio(before.p99, beforeRef.p99))} of its never-expiring reference; worst second p99 ${ms(before.worstSecond?.p99)} ms; compares per wave ${before.waves.filter(w => !w.partial).map(w => int(w.compares)).join(', ') || '-'}.`)
  }
  p('')
  return out.join('\n')
}
