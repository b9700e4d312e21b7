import net from 'node:net'
import type { Server } from 'node:net'
import t, { type Test } from 'tap'
import { startStack } from '../helpers/stack.js'

/** Half a request header, never finished: what a descriptor-exhaustion flood sends. */
const HALF = 'GET /api/status HTTP/1.1\r\nHost: x\r\nX-Pad: '

function connections (server: Server): Promise<number> {
  return new Promise((resolve, reject) => server.getConnections((err, n) => err === null ? resolve(n) : reject(err)))
}

async function until (cond: () => Promise<boolean> | boolean): Promise<void> {
  while (!await cond()) await new Promise(resolve => setTimeout(resolve, 20))
}

interface Flood {
  sockets: net.Socket[]
  closed: () => number
}

function flood (port: number, n: number): Flood {
  let closed = 0
  const sockets = Array.from({ length: n }, () => {
    const s = net.connect(port, '127.0.0.1', () => s.write(HALF))
    s.on('error', () => {})
    s.on('close', () => { closed++ })
    return s
  })
  return { sockets, closed: () => closed }
}

/**
 * Opens more half-open connections than the cap; waits until every one is either
 * held by the listener or closed by it (no clock involved), then checks the split.
 */
async function overCap (t: Test, server: Server, port: number, cap: number, n: number): Promise<void> {
  const f = flood(port, n)
  await until(async () => f.closed() + await connections(server) === n)
  t.equal(await connections(server), cap, `the listener holds ${cap} connections`)
  t.equal(f.closed(), n - cap, 'the rest were closed at once')
  for (const s of f.sockets) s.destroy()
  await until(async () => await connections(server) === 0)
}

t.test('the proxy, ops and admin ports cap concurrent connections and answer once the flood ends', async t => {
  const env = await startStack(t, { config: { server: { maxConnections: 5, maxInternalConnections: 3 } } })
  const { proxy, ops, admin } = env.sidecar

  await overCap(t, proxy.server, env.port, 5, 25)
  const res = await env.get('/api/status')
  t.equal(res.statusCode, 200, 'valid requests are answered after the flood')

  await overCap(t, ops.server, env.opsPort, 3, 12)
  t.equal((await fetch(`http://127.0.0.1:${env.opsPort}/healthz`)).status, 200, 'ops port answers after its flood')

  await overCap(t, admin.server, env.adminPort, 3, 12)
  t.not((await fetch(`http://127.0.0.1:${env.adminPort}/nope`)).status, 0, 'admin port answers after its flood')

  const drops = env.logs.records().filter(r => r.msg === 'connection cap reached: new connections closed')
  t.ok(drops.length >= 1, 'the drops are logged')
})

t.test('a connection that never finishes its request header gets 408 and gives its slot back', async t => {
  const env = await startStack(t, { config: { server: { maxConnections: 2, headersTimeoutMs: 1000 } } })
  const answers = await Promise.all([0, 1].map(() => new Promise<string>(resolve => {
    const s = net.connect(env.port, '127.0.0.1', () => s.write(HALF))
    let got = ''
    s.on('data', (c: Buffer) => { got += c.toString('latin1') })
    s.on('error', () => {})
    s.on('close', () => resolve(got))
  })))
  for (const a of answers) {
    t.match(a, /^HTTP\/1\.1 408 /)
    t.match(a, /\{"error":"bad_request","message":"The request did not arrive in time"\}$/)
  }
  t.equal((await env.get('/api/status')).statusCode, 200, 'the slots are free again')
})
