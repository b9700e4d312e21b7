#!/usr/bin/env node
// Summarizes a V8 .cpuprofile (node --cpu-prof): top self-time functions and
// self time by origin (our dist/, each node_modules package, node core, GC).
// Usage: node bench/profile-summary.mjs FILE.cpuprofile [--top 25] [--markdown]
//          [--from S --to S | --auto-window]
// --from/--to keep only the samples between S seconds after the profile's
// start; --auto-window keeps the last stretch where the main thread was busy
// (the load), dropping start-up and warm-up.
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('../', import.meta.url))

function origin (url, fn) {
  if (url === '') {
    if (fn === '(root)') return null
    if (fn === '(idle)' || fn === '(program)' || fn === '(garbage collector)') return fn
    return '(native / V8 builtins)'
  }
  if (url.startsWith('node:')) return url.startsWith('node:internal/') ? `node core (${url.slice(14).split('/')[0]})` : `node core (${url.slice(5)})`
  const nm = url.lastIndexOf('/node_modules/')
  if (nm !== -1) {
    const rest = url.slice(nm + 14).split('/')
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]
  }
  const dist = url.indexOf('/dist/')
  if (dist !== -1) return `sidecar dist/${url.slice(dist + 6).split('/').slice(0, -1).join('/') || '.'}`
  return url
}

function shortUrl (url) {
  if (url.startsWith('file://')) url = url.slice(7)
  if (url.startsWith(ROOT)) url = url.slice(ROOT.length)
  const nm = url.lastIndexOf('node_modules/')
  if (nm !== -1) url = url.slice(nm + 13)
  return url
}

/**
 * The last stretch of whole seconds in which the main thread was at least
 * `threshold` busy: the load window of a profile that also holds start-up.
 * Returns absolute timestamps (µs, the profile's clock).
 */
export function autoWindow (profile, threshold = 0.5) {
  const byId = new Map(profile.nodes.map(n => [n.id, n]))
  const buckets = []
  let t = profile.startTime
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i]
    const b = Math.floor((t - profile.startTime) / 1e6)
    buckets[b] ??= { busy: 0, all: 0 }
    const dt = profile.timeDeltas[i + 1] ?? 0
    buckets[b].all += dt
    if (byId.get(profile.samples[i]).callFrame.functionName !== '(idle)') buckets[b].busy += dt
  }
  const busy = b => b !== undefined && b.all > 0 && b.busy / b.all >= threshold
  let end = buckets.length - 1
  while (end >= 0 && !busy(buckets[end])) end--
  if (end < 0) return null
  let start = end
  while (start > 0 && busy(buckets[start - 1])) start--
  return { from: profile.startTime + start * 1e6, to: profile.startTime + (end + 1) * 1e6 }
}

/**
 * Self time per function and per origin, in ms and % of busy (non-idle) time.
 * window: { from, to } in the profile's clock (µs); only samples inside count.
 */
export function summarize (profile, top = 25, window = null) {
  const byId = new Map(profile.nodes.map(n => [n.id, n]))
  const self = new Map()
  const { samples, timeDeltas } = profile
  let ts = profile.startTime
  for (let i = 0; i < samples.length; i++) {
    ts += timeDeltas[i]
    if (window !== null && (ts < window.from || ts > window.to)) continue
    // Each sample lasts until the next one.
    const dt = i + 1 < timeDeltas.length ? timeDeltas[i + 1] : 0
    self.set(samples[i], (self.get(samples[i]) ?? 0) + Math.max(0, dt))
  }
  const fns = new Map()
  const origins = new Map()
  let total = 0
  let idle = 0
  for (const [id, us] of self) {
    const n = byId.get(id)
    const cf = n.callFrame
    const name = cf.functionName === '' ? '(anonymous)' : cf.functionName
    total += us
    if (name === '(idle)') {
      idle += us
      continue
    }
    const key = `${name} ${shortUrl(cf.url)}${cf.url === '' ? '' : `:${cf.lineNumber + 1}`}`
    fns.set(key, (fns.get(key) ?? 0) + us)
    const o = origin(cf.url, name)
    origins.set(o, (origins.get(o) ?? 0) + us)
  }
  const busy = total - idle
  const rows = m => [...m].sort((a, b) => b[1] - a[1]).map(([name, us]) => ({ name, ms: us / 1000, pct: (100 * us) / busy }))

  // Inclusive time: a sample counts once for every distinct origin (and every
  // distinct function of our own dist/) on its stack.
  const parent = new Map()
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  const stackSets = new Map()
  function stackOf (id) {
    let e = stackSets.get(id)
    if (e !== undefined) return e
    const n = byId.get(id)
    const up = parent.has(id) ? stackOf(parent.get(id)) : { origins: new Set(), own: new Set() }
    const cf = n.callFrame
    const name = cf.functionName === '' ? '(anonymous)' : cf.functionName
    e = up
    const o = origin(cf.url, name)
    if (o === null) {
      stackSets.set(id, e)
      return e
    }
    const ownKey = o.startsWith('sidecar dist/') ? `${name} ${shortUrl(cf.url)}:${cf.lineNumber + 1}` : null
    if (!up.origins.has(o) || (ownKey !== null && !up.own.has(ownKey))) {
      e = { origins: new Set(up.origins).add(o), own: ownKey === null ? up.own : new Set(up.own).add(ownKey) }
    }
    stackSets.set(id, e)
    return e
  }
  const inclOrigins = new Map()
  const inclOwn = new Map()
  for (const [id, us] of self) {
    const n = byId.get(id)
    if (n.callFrame.functionName === '(idle)') continue
    const st = stackOf(id)
    for (const o of st.origins) inclOrigins.set(o, (inclOrigins.get(o) ?? 0) + us)
    for (const f of st.own) inclOwn.set(f, (inclOwn.get(f) ?? 0) + us)
  }
  return {
    wallMs: window === null ? (profile.endTime - profile.startTime) / 1000 : (window.to - window.from) / 1000,
    window: window === null ? null : { fromS: (window.from - profile.startTime) / 1e6, toS: (window.to - profile.startTime) / 1e6 },
    busyMs: busy / 1000,
    idleMs: idle / 1000,
    functions: rows(fns).slice(0, top),
    origins: rows(origins),
    inclusiveOrigins: rows(inclOrigins),
    inclusiveOwn: rows(inclOwn).slice(0, top)
  }
}

export function toMarkdown (s, top = 25) {
  const lines = []
  const win = s.window === null ? 'the whole profile' : `the load window only (${s.window.fromS.toFixed(1)}-${s.window.toS.toFixed(1)} s after the process started; start-up and warm-up excluded)`
  lines.push(`Samples of ${win}: ${(s.wallMs / 1000).toFixed(1)} s wall, ${(s.busyMs / 1000).toFixed(1)} s busy on the main thread (${(100 * s.busyMs / (s.busyMs + s.idleMs)).toFixed(0)}%); percentages are of busy time.`)
  lines.push('')
  lines.push('Self time by origin:')
  lines.push('')
  lines.push('| origin | self ms | % |')
  lines.push('|---|---:|---:|')
  for (const o of s.origins) if (o.pct >= 0.5) lines.push(`| ${o.name} | ${o.ms.toFixed(0)} | ${o.pct.toFixed(1)} |`)
  lines.push('')
  lines.push('Inclusive time (a sample counts for every origin on its synchronous stack; async continuations start a new stack; packages with >= 1%):')
  lines.push('')
  lines.push('| origin on the stack | ms | % |')
  lines.push('|---|---:|---:|')
  for (const o of s.inclusiveOrigins) if (o.pct >= 1 && !o.name.startsWith('node core') && !o.name.startsWith('(')) lines.push(`| ${o.name} | ${o.ms.toFixed(0)} | ${o.pct.toFixed(1)} |`)
  lines.push('')
  lines.push('Inclusive time of the sidecar\'s own functions (dist/), top 15:')
  lines.push('')
  lines.push('| function (file:line) | ms | % |')
  lines.push('|---|---:|---:|')
  for (const f of s.inclusiveOwn.slice(0, 15)) lines.push(`| \`${f.name.replace(/\|/g, '\\|')}\` | ${f.ms.toFixed(0)} | ${f.pct.toFixed(1)} |`)
  lines.push('')
  lines.push(`Top ${top} functions by self time:`)
  lines.push('')
  lines.push('| function (file:line) | self ms | % |')
  lines.push('|---|---:|---:|')
  for (const f of s.functions.slice(0, top)) lines.push(`| \`${f.name.replace(/\|/g, '\\|')}\` | ${f.ms.toFixed(0)} | ${f.pct.toFixed(1)} |`)
  return lines.join('\n')
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2)
  const file = args.find((a, i) => !a.startsWith('--') && !['--top', '--from', '--to'].includes(args[i - 1]))
  if (file === undefined) {
    process.stderr.write('usage: node bench/profile-summary.mjs FILE.cpuprofile [--top N] [--markdown]\n')
    process.exit(2)
  }
  const opt = name => {
    const i = args.indexOf(name)
    return i === -1 ? null : Number(args[i + 1])
  }
  const top = opt('--top') ?? 25
  const profile = JSON.parse(readFileSync(file, 'utf8'))
  let window = null
  if (args.includes('--auto-window')) window = autoWindow(profile)
  else if (opt('--from') !== null || opt('--to') !== null) window = { from: profile.startTime + (opt('--from') ?? 0) * 1e6, to: profile.startTime + (opt('--to') ?? Infinity) * 1e6 }
  const s = summarize(profile, top, window)
  if (args.includes('--markdown')) {
    process.stdout.write(toMarkdown(s, top) + '\n')
  } else {
    process.stdout.write(`busy ${s.busyMs.toFixed(0)} ms of ${s.wallMs.toFixed(0)} ms wall${s.window === null ? '' : ` (window ${s.window.fromS.toFixed(1)}-${s.window.toS.toFixed(1)} s)`}\n\nby origin:\n`)
    for (const o of s.origins) process.stdout.write(`  ${o.pct.toFixed(1).padStart(5)}%  ${o.ms.toFixed(0).padStart(7)} ms  ${o.name}\n`)
    process.stdout.write('\ninclusive by origin:\n')
    for (const o of s.inclusiveOrigins) if (o.pct >= 1) process.stdout.write(`  ${o.pct.toFixed(1).padStart(5)}%  ${o.ms.toFixed(0).padStart(7)} ms  ${o.name}\n`)
    process.stdout.write('\ninclusive, own functions (dist/):\n')
    for (const f of s.inclusiveOwn) process.stdout.write(`  ${f.pct.toFixed(1).padStart(5)}%  ${f.ms.toFixed(0).padStart(7)} ms  ${f.name}\n`)
    process.stdout.write('\ntop functions (self):\n')
    for (const f of s.functions) process.stdout.write(`  ${f.pct.toFixed(1).padStart(5)}%  ${f.ms.toFixed(0).padStart(7)} ms  ${f.name}\n`)
  }
}
