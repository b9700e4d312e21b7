// Issue 17 item 2: SLOW unauthenticated POST /api/status (a public route) with
// Content-Length: 100000, each sending one byte every INTERVAL seconds, against
// the sidecar with its DEFAULT config. Reports how many slow requests the
// sidecar still holds over time, how they ended (408 or still open), and the
// latency of valid POSTs during and after the attack.
//
//   npm run build && node bench/attack/slow-body.mjs [--slow 130] [--interval 5] [--duration 30] [--sources 1]
//
// The slow clients come from --sources addresses (127.0.1.1...), the valid
// requests from 127.0.0.1: one attacker address meets MAX_BODIES_PER_CLIENT,
// --sources 130 (one address each) only the body rate check.
import net from 'node:net'
import { parseArgs } from 'node:util'
import { sleep, startSidecar, startUpstream, summarize, timedRequest } from './lib.mjs'

const { values } = parseArgs({ options: { slow: { type: 'string', default: '130' }, interval: { type: 'string', default: '5' }, duration: { type: 'string', default: '30' }, sources: { type: 'string', default: '1' } } })
const slowCount = Number(values.slow)
const intervalMs = Number(values.interval) * 1000
const durationMs = Number(values.duration) * 1000
const sources = Number(values.sources)

const upstream = await startUpstream()
const sidecar = await startSidecar({ upstreamUrl: upstream.url })
const [port] = sidecar.ports
console.error(`sidecar pid ${sidecar.child.pid}, proxy port ${port}; ${slowCount} slow bodies from ${sources} address(es), 1 byte every ${intervalMs / 1000}s, for ${durationMs / 1000}s`)

const slow = Array.from({ length: slowCount }, (_, i) => {
  const s = { open: true, status: null, bytes: 0 }
  const localAddress = `127.0.${1 + Math.floor((i % sources) / 250)}.${1 + ((i % sources) % 250)}`
  const socket = net.connect({ port, host: '127.0.0.1', localAddress }, () => {
    socket.write('POST /api/status HTTP/1.1\r\nHost: sidecar\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\nx')
    s.bytes = 1
  })
  let got = ''
  socket.on('data', c => { got += c.toString('latin1'); s.status ??= Number(/^HTTP\/1\.1 (\d{3})/.exec(got)?.[1] ?? 0) || null })
  socket.on('error', () => {})
  socket.on('close', () => { s.open = false })
  s.timer = setInterval(() => { if (s.open) { socket.write('x'); s.bytes++ } }, intervalMs)
  s.socket = socket
  return s
})

const held = []
const start = Date.now()
const valid = []
const heldTimer = setInterval(() => held.push({ s: Math.round((Date.now() - start) / 1000), held: slow.filter(s => s.open).length }), 1000)
while (Date.now() - start < durationMs) {
  valid.push({ at: Date.now() - start, ...await timedRequest(port, { method: 'POST', body: 'valid' }) })
  await sleep(250)
}
clearInterval(heldTimer)
for (const s of slow) { clearInterval(s.timer); s.socket.destroy() }
await sleep(500)
const after = []
for (let i = 0; i < 10; i++) { after.push(await timedRequest(port, { method: 'POST', body: 'valid' })); await sleep(100) }
const exit = sidecar.exit()
const statuses = {}
for (const s of slow) { const k = s.status === null ? 'no answer' : String(s.status); statuses[k] = (statuses[k] ?? 0) + 1 }
const windows = {}
for (const v of valid) { const k = `${Math.floor(v.at / 5000) * 5}-${Math.floor(v.at / 5000) * 5 + 5}s`; (windows[k] ??= []).push(v) }
console.log(JSON.stringify({
  config: 'config/default.yaml (bodyIdleTimeoutMs, bodyMinBytesPerSecond, upstream.connections defaults)',
  slowRequests: { count: slowCount, sources, answers: statuses, heldOverTime: held.filter((h, i) => i % 2 === 0 || i === held.length - 1) },
  validRequests: { during: summarize(valid), byWindow: Object.fromEntries(Object.entries(windows).map(([k, v]) => [k, summarize(v)])), after: summarize(after) },
  sidecar: { alive: exit === null, exit }
}, null, 2))
await sidecar.close()
upstream.close()
