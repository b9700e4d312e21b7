import net from 'node:net'
import type { AddressInfo } from 'node:net'
import { randomBytes } from 'node:crypto'
import t from 'tap'
import WebSocket from 'ws'
import { startStack } from '../helpers/stack.js'
import { startEchoUpstream } from '../helpers/websocket.js'

/** A masked client text frame (RFC 6455 §5.2), payload under 126 bytes. */
function textFrame (text: string): Buffer {
  const payload = Buffer.from(text)
  const mask = randomBytes(4)
  const out = Buffer.alloc(6 + payload.length)
  out[0] = 0x81
  out[1] = 0x80 | payload.length
  mask.copy(out, 2)
  for (let i = 0; i < payload.length; i++) out[6 + i] = payload[i]! ^ mask[i % 4]!
  return out
}

/**
 * A raw upgrade request for /live and one text frame: in the same write when `afterMs`
 * is null, else in its own write that many ms later. Resolves with what came back
 * once `echo:<text>` arrived, or after 6 s.
 */
function rawUpgrade (port: number, token: string, text: string, afterMs: number | null): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1')
    let got = Buffer.alloc(0)
    const timer = setTimeout(() => { sock.destroy(); resolve(got.toString('latin1')) }, 6000)
    sock.on('data', (c: Buffer) => {
      got = Buffer.concat([got, c])
      if (got.includes(`echo:${text}`)) { clearTimeout(timer); sock.destroy(); resolve(got.toString('latin1')) }
    })
    sock.on('error', reject)
    const request = Buffer.from('GET /live HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\nX-API-Key: ${token}\r\n\r\n`)
    if (afterMs === null) {
      sock.write(Buffer.concat([request, textFrame(text)]))
    } else {
      sock.write(request)
      setTimeout(() => sock.write(textFrame(text)), afterMs)
    }
  })
}

t.test('frames sent at once after the 101 are relayed', async t => {
  const { url: upstreamUrl } = await startEchoUpstream(t)
  const env = await startStack(t, { config: { routes: [{ prefix: '/', upstream: upstreamUrl }] } })
  const pat = await env.mintPat({ role: 'viewer' })

  // The frame in the same TCP write as the upgrade request.
  const raw = await rawUpgrade(env.port, pat.token, 'now', null)
  t.match(raw, /^HTTP\/1\.1 101/, '101 first')
  t.ok(raw.includes('echo:now'), 'the frame that came with the upgrade request was relayed')

  // ws: send in the open callback, several frames before the upstream can have answered.
  const replies = await new Promise<string[]>((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${env.port}/live`, { headers: { 'x-api-key': pat.token } })
    const got: string[] = []
    const timer = setTimeout(() => { ws.terminate(); resolve(got) }, 6000)
    ws.on('open', () => { for (const m of ['a', 'b', 'c']) ws.send(m) })
    ws.on('message', d => { got.push(String(d)); if (got.length === 3) { clearTimeout(timer); ws.close(); resolve(got) } })
    ws.on('error', reject)
  })
  t.same(replies, ['echo:a', 'echo:b', 'echo:c'], 'in order, none lost')

  // The frame in its own write right after the upgrade request, before the 101 (authentication still running).
  const fresh = await env.mintPat({ role: 'viewer' })
  const raw2 = await rawUpgrade(env.port, fresh.token, 'later', 5)
  t.match(raw2, /^HTTP\/1\.1 101/, '101 first')
  t.ok(raw2.includes('echo:later'), 'a frame sent before the 101 arrived was relayed')
})

t.test('an upstream that never completes the WebSocket handshake: the client gets a close, not silence', async t => {
  const held: net.Socket[] = []
  const silent = net.createServer(s => { held.push(s); s.resume() })
  await new Promise<void>(resolve => silent.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>(resolve => { for (const s of held) s.destroy(); silent.close(() => resolve()) }))
  const upstreamUrl = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`
  const env = await startStack(t, { config: { upstream: { timeoutMs: 300 }, routes: [{ prefix: '/', upstream: upstreamUrl }] } })
  const pat = await env.mintPat({ role: 'viewer' })
  const code = await new Promise<number>((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${env.port}/live`, { headers: { 'x-api-key': pat.token } })
    ws.on('open', () => ws.send('hello?'))
    ws.on('close', c => resolve(c))
    ws.on('error', reject)
  })
  t.equal(code, 1011, 'closed with 1011 once the upstream handshake timed out')
  t.equal(held.length, 1, 'the upstream was tried')
})
