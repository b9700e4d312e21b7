// Issue 17 item 1: CONNECTIONS idle connections that each send half a request
// header, against the sidecar with its DEFAULT config (config/default.yaml).
// Reports the connections the attackers got and the sidecar held, valid-request
// latency before, during and after the flood, and whether the process lived.
//
//   npm run build && node bench/attack/half-open.mjs [--connections 20000] [--hold 20]
//
// The attackers are child processes (each under its own open-files limit) and
// spread their connections over source addresses 127.0.0.2... so that neither
// they nor the ephemeral port range are the bottleneck.
import { fork } from 'node:child_process'
import net from 'node:net'
import { parseArgs } from 'node:util'
import { sleep, startSidecar, startUpstream, summarize, timedRequest } from './lib.mjs'

const HALF = 'GET /api/status HTTP/1.1\r\nHost: sidecar\r\nUser-Agent: half-open\r\nX-Pad: '

if (process.argv[2] === '--attacker') {
  // Child: open `count` connections from source addresses 127.0.<i>.x, report, hold until told.
  const [, , , port, count, index] = process.argv
  let connected = 0; let closed = 0; let failed = 0
  const sockets = []
  for (let i = 0; i < Number(count); i++) {
    const localAddress = `127.${1 + Number(index)}.${Math.floor(i / 250)}.${2 + (i % 250)}`
    const s = net.connect({ port: Number(port), host: '127.0.0.1', localAddress })
    s.on('connect', () => { connected++; s.write(HALF) })
    s.on('error', () => { failed++ })
    s.on('close', () => { closed++ })
    sockets.push(s)
    if (i % 500 === 499) await sleep(5)
  }
  const report = () => process.send({ connected, closed, failed, open: connected - closed })
  process.on('message', m => {
    if (m === 'report') report()
    if (m === 'stop') { for (const s of sockets) s.destroy(); setTimeout(() => { report(); process.exit(0) }, 200) }
  })
  report()
} else {
  const { values } = parseArgs({ options: { connections: { type: 'string', default: '20000' }, hold: { type: 'string', default: '20' }, attackers: { type: 'string', default: '4' } } })
  const total = Number(values.connections)
  const holdMs = Number(values.hold) * 1000
  const attackers = Number(values.attackers)
  const upstream = await startUpstream()
  const sidecar = await startSidecar({ upstreamUrl: upstream.url })
  const [port] = sidecar.ports
  const probe = async (ms) => {
    const out = []
    const t0 = Date.now()
    while (Date.now() - t0 < ms) { out.push({ at: Date.now() - t0, ...await timedRequest(port) }); await sleep(100) }
    return out
  }
  const byWindow = (results, ms) => {
    const w = {}
    for (const r of results) { const k = `${Math.floor(r.at / ms) * ms / 1000}-${(Math.floor(r.at / ms) + 1) * ms / 1000}s`; (w[k] ??= []).push(r) }
    return Object.fromEntries(Object.entries(w).map(([k, v]) => [k, summarize(v)]))
  }
  console.error(`sidecar pid ${sidecar.child.pid}, proxy port ${port}, ${sidecar.fds()} fds; ${total} half-open connections from ${attackers} processes, held ${holdMs / 1000}s`)
  const before = summarize(await probe(2000))

  const kids = Array.from({ length: attackers }, (_, i) => fork(new URL(import.meta.url).pathname, ['--attacker', String(port), String(Math.ceil(total / attackers)), String(i)], { stdio: 'inherit' }))
  const latest = new Map()
  for (const k of kids) k.on('message', m => latest.set(k.pid, m))
  let maxFds = 0
  const fdsOverTime = []
  const t0 = Date.now()
  let tick = 0
  const fdTimer = setInterval(() => {
    const n = sidecar.fds() ?? 0
    maxFds = Math.max(maxFds, n)
    if (tick++ % 10 === 0) fdsOverTime.push({ s: Math.round((Date.now() - t0) / 1000), fds: n })
  }, 200)
  const duringRaw = await probe(holdMs)
  const during = { all: summarize(duringRaw), byWindow: byWindow(duringRaw, 5000) }
  for (const k of kids) k.send('report')
  await sleep(300)
  const attack = { connected: 0, open: 0, closed: 0, failed: 0 }
  for (const m of latest.values()) for (const k of Object.keys(attack)) attack[k] += m[k]
  const sidecarFdsDuring = sidecar.fds()
  for (const k of kids) k.send('stop')
  await Promise.all(kids.map(k => new Promise(resolve => k.once('exit', resolve))))
  clearInterval(fdTimer)
  await sleep(1000)
  const after = summarize(await probe(3000))
  const exit = sidecar.exit()
  const report = {
    config: 'config/default.yaml (MAX_CONNECTIONS default)',
    attack: { requested: total, ...attack, note: 'connected counts handshakes the kernel completed (backlog included); open = attacker sockets that had not seen their close when the hold ended; the sidecar side is sidecar.fdsOverTime' },
    sidecar: { fdsAtHoldEnd: sidecarFdsDuring, maxFds, fdsOverTime, alive: exit === null, exit },
    validRequests: { before, during, after }
  }
  console.log(JSON.stringify(report, null, 2))
  if (exit !== null) console.error(sidecar.out().slice(-3000))
  clearInterval(fdTimer)
  await sidecar.close()
  upstream.close()
}
