import http from 'node:http'
import net from 'node:net'
import t from 'tap'
import { startStack } from '../helpers/stack.js'

interface Raw {
  socket: net.Socket
  /** Everything the sidecar wrote back, once it closed the connection. */
  closed: Promise<string>
}

/** A POST to the public route that announces a large body and sends `first` of it. */
function slowPost (port: number, first: string): Raw {
  const socket = net.connect(port, '127.0.0.1')
  let got = ''
  socket.on('data', (c: Buffer) => { got += c.toString('latin1') })
  socket.on('error', () => {})
  const closed = new Promise<string>(resolve => socket.on('close', () => resolve(got)))
  socket.write(`POST /api/status HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n${first}`)
  return { socket, closed }
}

t.test('a request body that stops arriving is cut with 408 and frees its upstream connection', async t => {
  const env = await startStack(t, { config: { server: { bodyIdleTimeoutMs: 300, bodyMinBytesPerSecond: 0 }, upstream: { connections: 2 } } })
  // Two stalled bodies: with the cut, both upstream connections come back.
  const stalled = [slowPost(env.port, 'x'), slowPost(env.port, 'y')]
  const answers = await Promise.all(stalled.map(s => s.closed))
  for (const a of answers) {
    t.match(a, /^HTTP\/1\.1 408 /, '408')
    t.match(a, /\{"error":"bad_request","message":"The request did not arrive in time"\}$/, 'the contract body')
  }
  const res = await env.request('/api/status', { method: 'POST', body: 'ok' })
  t.equal(res.statusCode, 200, 'a valid request still gets an upstream connection')
  t.ok(env.logs.records().some(r => r.msg === 'request body too slow: cut' && r.reason === 'idle'))
})

t.test('a body trickled below the minimum rate is cut too (idle timeout never reached)', async t => {
  const env = await startStack(t, { config: { server: { bodyIdleTimeoutMs: 400, bodyMinBytesPerSecond: 1000 } } })
  const slow = slowPost(env.port, 'a')
  // One byte every 50 ms: 20 B/s, never 400 ms silent.
  const drip = setInterval(() => slow.socket.write('b'), 50)
  t.teardown(() => clearInterval(drip))
  const answer = await slow.closed
  clearInterval(drip)
  t.match(answer, /^HTTP\/1\.1 408 /)
  t.ok(env.logs.records().some(r => r.msg === 'request body too slow: cut' && r.reason === 'rate'))
})

t.test('a body held back by a slow upstream is not the client\'s fault', async t => {
  // The upstream reads nothing until told to: the client's bytes pile up in the sidecar.
  let release: () => void = () => {}
  const released = new Promise<void>(resolve => { release = resolve })
  const upstream = http.createServer((req, res) => {
    req.pause()
    void released.then(() => {
      let n = 0
      req.on('data', (c: Buffer) => { n += c.length })
      req.on('end', () => res.end(String(n)))
      req.resume()
    })
  })
  await new Promise<void>(resolve => upstream.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>(resolve => { upstream.closeAllConnections(); upstream.close(() => resolve()) }))
  const port = (upstream.address() as net.AddressInfo).port
  const env = await startStack(t, { config: { server: { bodyIdleTimeoutMs: 200, bodyMinBytesPerSecond: 0 }, routes: [{ prefix: '/up', upstream: `http://127.0.0.1:${port}`, public: true }] } })
  const body = Buffer.alloc(32 * 1024 * 1024, 1)
  const pending = env.request('/up', { method: 'POST', body })
  // Five idle timeouts with the upstream reading nothing: the sidecar holds bytes it cannot pass on.
  await new Promise(resolve => setTimeout(resolve, 1000))
  release()
  const res = await pending
  t.equal(res.statusCode, 200)
  t.equal(res.text, String(body.length), 'the whole body arrived')
})

t.test('one client address cannot hold more than maxBodiesPerClient bodies at once', async t => {
  // An upstream that counts requests as their headers arrive.
  let started = 0
  const parked: http.ServerResponse[] = []
  const upstream = http.createServer((req, res) => {
    started++
    req.resume()
    // /up/slow answers only at the end of the test: its body has arrived, its response has not.
    req.on('end', () => { if (req.url === '/up/slow') parked.push(res); else res.end('ok') })
  })
  await new Promise<void>(resolve => upstream.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>(resolve => { for (const r of parked) r.end(); upstream.closeAllConnections(); upstream.close(() => resolve()) }))
  const port = (upstream.address() as net.AddressInfo).port
  // No timeouts: only the per-client bound is under test.
  const env = await startStack(t, {
    config: {
      server: { bodyIdleTimeoutMs: 0, bodyMinBytesPerSecond: 0, maxBodiesPerClient: 2 },
      routes: [{ prefix: '/up', upstream: `http://127.0.0.1:${port}`, public: true }]
    }
  })
  const post = (): Raw => {
    const socket = net.connect(env.port, '127.0.0.1')
    let got = ''
    socket.on('data', (c: Buffer) => { got += c.toString('latin1') })
    socket.on('error', () => {})
    const closed = new Promise<string>(resolve => socket.on('close', () => resolve(got)))
    socket.write('POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nx')
    return { socket, closed }
  }
  const startedCount = (): number => started
  // Three whole bodies whose responses are pending: they no longer count.
  const complete = [0, 1, 2].map(() => env.request('/up/slow', { method: 'POST', body: 'done' }))
  while (startedCount() < 3) await new Promise(resolve => setTimeout(resolve, 10))
  t.pass('three requests whose bodies had arrived all reached the upstream')
  const held = [post(), post()]
  while (startedCount() < 5) await new Promise(resolve => setTimeout(resolve, 10))
  const answer = await post().closed
  t.match(answer, /^HTTP\/1\.1 429 /, 'the third body from the same address: 429')
  t.match(answer, /retry-after: 1/i)
  t.match(answer, /\{"error":"rate_limited","message":"Too many request bodies in progress from this client; retry shortly"\}$/)
  t.equal(started, 5, 'the third slow body never reached the upstream')
  for (const h of held) h.socket.destroy()
  await Promise.all(held.map(h => h.closed))
  // Until the sidecar has seen both connections go (the three pending ones stay).
  const open = (): Promise<number> => new Promise(resolve => env.sidecar.proxy.server.getConnections((_e, n) => resolve(n)))
  while (await open() > complete.length) await new Promise(resolve => setTimeout(resolve, 10))
  const ok = await new Promise<string>(resolve => {
    const s = net.connect(env.port, '127.0.0.1')
    let got = ''
    s.on('data', (c: Buffer) => { got += c.toString('latin1'); if (got.includes('\r\n\r\n')) { s.destroy(); resolve(got) } })
    s.on('error', () => resolve(got))
    s.write('POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok')
  })
  t.match(ok, /^HTTP\/1\.1 200 /, 'the bound is released when the bodies end')
  for (const r of parked) r.end('late')
  for (const r of await Promise.all(complete)) t.equal(r.statusCode, 200, r.text)
})
