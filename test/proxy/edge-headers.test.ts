import { randomBytes } from 'node:crypto'
import http from 'node:http'
import net from 'node:net'
import t from 'tap'
import { HOP_BY_HOP_HEADERS, RETARGETING_HEADERS, isReserved, upstreamHeaders, type HeaderSet, type RequestAuth } from '../../src/auth/identity-headers.js'
import type { Principal } from '../../src/auth/principal.js'
import { startStack } from '../helpers/stack.js'

/** docs/DESIGN.md §2.1, issue 17 items 5, 6, 7, 8, 10, 14, 15. */

function lastSeen (env: { upstream: { requests: Array<{ headers: http.IncomingHttpHeaders, bodyBytes: number, rawHeaders: string[] }> } }): { headers: http.IncomingHttpHeaders, bodyBytes: number, rawHeaders: string[] } {
  const seen = env.upstream.requests.at(-1)
  if (seen === undefined) throw new Error('upstream saw nothing')
  return seen
}

const RETARGET: Record<string, string> = {
  forwarded: 'for=6.6.6.6;host=evil.example;proto=https',
  'x-real-ip': '6.6.6.6',
  'x-client-ip': '6.6.6.6',
  'x-original-url': '/api/scans/1',
  'x-rewrite-url': '/api/scans/1',
  'x-forwarded-prefix': '/admin',
  'x-forwarded-port': '443',
  'x-forwarded-server': 'evil',
  'x-http-method-override': 'DELETE',
  'x-http-method': 'DELETE',
  'x-method-override': 'DELETE'
}

t.test('item 5: re-targeting headers never reach the upstream, on public and authenticated routes', async t => {
  const env = await startStack(t)
  const viewer = await env.mintPat({ role: 'viewer' })
  for (const [path, token] of [['/api/status', undefined], ['/api/scans', viewer.token]] as const) {
    const res = await env.get(path, token, RETARGET)
    t.equal(res.statusCode, 200, path)
    const seen = lastSeen(env)
    for (const name of Object.keys(RETARGET)) t.notOk(name in seen.headers, `${path}: ${name} stripped`)
  }
  t.same([...RETARGETING_HEADERS].sort(), Object.keys(RETARGET).sort(), 'the test covers the whole list')
})

t.test('item 5: upstream.allowHeaders lets a named one through', async t => {
  const env = await startStack(t, { config: { upstream: { allowHeaders: ['forwarded'] } } })
  const res = await env.get('/api/status', undefined, RETARGET)
  t.equal(res.statusCode, 200)
  const seen = lastSeen(env)
  t.equal(seen.headers.forwarded, RETARGET.forwarded)
  t.notOk('x-http-method-override' in seen.headers)
})

t.test('item 6: with trusted proxies the limiter keys on the first untrusted address, not on what the client wrote', async t => {
  const env = await startStack(t, { config: { server: { trustProxy: true }, auth: { rateLimit: { maxFailures: 5, windowSeconds: 60 } } } })
  const statuses: number[] = []
  for (let i = 0; i < 12; i++) {
    // The trusted proxy in front (this test's client, on loopback) appends the address it saw.
    const res = await env.get('/api/scans', `hg_pat_${randomBytes(24).toString('hex')}`, { 'x-forwarded-for': `10.0.${i}.${i}, 203.0.113.7` })
    statuses.push(res.statusCode)
  }
  t.same(statuses.slice(0, 5), [401, 401, 401, 401, 401])
  t.ok(statuses.slice(5).every(s => s === 429), `429 once the real client is over the limit: ${statuses.join(',')}`)
  // Another client behind the same proxy is not locked out.
  const other = await env.get('/api/scans', `hg_pat_${randomBytes(24).toString('hex')}`, { 'x-forwarded-for': '203.0.113.8' })
  t.equal(other.statusCode, 401)
  const pat = await env.mintPat({ role: 'viewer' })
  const ok = await env.get('/api/scans', pat.token, { 'x-forwarded-for': '1.1.1.1, 203.0.113.9' })
  t.equal(ok.statusCode, 200)
  t.equal(lastSeen(env).headers['x-forwarded-for'], '203.0.113.9, 127.0.0.1', 'the chain the trusted hop vouches for')
})

t.test('item 6: without trustProxy X-Forwarded-For is the socket address alone', async t => {
  const env = await startStack(t)
  const res = await env.get('/api/status', undefined, { 'x-forwarded-for': '1.2.3.4' })
  t.equal(res.statusCode, 200)
  t.equal(lastSeen(env).headers['x-forwarded-for'], '127.0.0.1')
})

t.test('item 7: Expect: 100-continue uploads and Keep-Alive headers work; hop-by-hop headers are not forwarded', async t => {
  const env = await startStack(t)
  const member = await env.mintPat({ role: 'member' })
  const body = randomBytes(3 * 1024 * 1024)
  const res = await new Promise<{ status: number, continued: boolean }>((resolve, reject) => {
    let continued = false
    const req = http.request({
      port: env.port,
      method: 'POST',
      path: '/api/scans',
      headers: { 'x-api-key': member.token, 'content-type': 'application/octet-stream', 'content-length': body.length, expect: '100-continue', 'keep-alive': 'timeout=5', te: 'trailers', 'proxy-connection': 'keep-alive' }
    })
    req.on('continue', () => {
      continued = true
      req.end(body)
    })
    req.on('response', r => {
      r.resume()
      r.on('end', () => resolve({ status: r.statusCode ?? 0, continued }))
    })
    req.on('error', reject)
  })
  t.equal(res.status, 200)
  t.ok(res.continued, '100 Continue came back')
  const seen = lastSeen(env)
  t.equal(seen.bodyBytes, body.length, 'the whole body reached the upstream')
  for (const h of HOP_BY_HOP_HEADERS) t.notOk(h in seen.headers, `${h} not forwarded`)
})

t.test('item 8: underscore and bare spellings of the reserved namespace are stripped', async t => {
  const env = await startStack(t)
  const viewer = await env.mintPat({ role: 'viewer' })
  const forged = { 'x-hg-': 'owner', x_hg_role: 'owner', x_hg_user_id: 'someone', 'x-hg_permissions': 'org:manage', X_HG_ROLE: 'owner', 'X-Hg_Org-Id': 'other' }
  for (const token of [undefined, viewer.token]) {
    const res = await env.get(token === undefined ? '/api/status' : '/api/scans', token, forged)
    t.equal(res.statusCode, 200)
    const names = lastSeen(env).rawHeaders.filter((_, i) => i % 2 === 0).map(n => n.toLowerCase())
    t.same(names.filter(n => n.replaceAll('_', '-').startsWith('x-hg-') && n.includes('_')), [], 'no underscore spelling')
    t.notOk(names.includes('x-hg-'), 'no bare x-hg-')
  }
  t.ok(isReserved('X_HG_'))
  t.notOk(isReserved('x-hgx'))
})

t.test('item 10: a credential-shaped value in any other header is never forwarded', async t => {
  const env = await startStack(t)
  const viewer = await env.mintPat({ role: 'viewer' })
  const other = await env.mintPat({ role: 'owner' })
  const res = await env.get('/api/scans', viewer.token, {
    authorization: `Bearer\t${other.token}`,
    cookie: `session=${other.token}`,
    'x-extra': `token ${other.token.toUpperCase().replace('HG_PAT_', 'hg_pat_')}`
  })
  t.equal(res.statusCode, 200)
  const seen = lastSeen(env)
  t.notOk('authorization' in seen.headers)
  t.notOk('cookie' in seen.headers)
  t.notOk('x-extra' in seen.headers)
  t.equal(seen.headers['x-hg-role'], 'viewer')
  t.notOk(JSON.stringify(seen.rawHeaders).includes(other.token.slice(7)), 'no header holds the other secret')
})

t.test('upstreamHeaders is a pure function of its inputs, for HTTP and WebSocket alike', async t => {
  const principal: Principal = { type: 'pat', credentialId: 'c1', prefix: 'hg_pat_abc', userId: 'u1', orgId: 'o1', role: 'viewer', permissions: ['scans:read'], permissionsHeader: 'scans:read', expiresAt: null }
  const auth: RequestAuth = { reason: 'ok', kind: 'pat', prefix: 'hg_pat_abc', principal, decision: null, credentialSource: 'x-api-key' }
  const ctx = { auth, forwardedFor: '10.0.0.1', proto: 'https', host: 'h.example', requestId: 'r1', stripCredentialHeader: true }
  const inbound: HeaderSet = { 'x-api-key': 'hg_pat_abc', 'x-hg-role': 'owner', forwarded: 'for=1.1.1.1', accept: 'a/b' }
  t.same(upstreamHeaders({ ...inbound }, ctx), {
    accept: 'a/b',
    'x-hg-auth-type': 'pat',
    'x-hg-user-id': 'u1',
    'x-hg-org-id': 'o1',
    'x-hg-role': 'viewer',
    'x-hg-permissions': 'scans:read',
    'x-hg-credential-id': 'c1',
    'x-hg-credential-prefix': 'hg_pat_abc',
    'x-forwarded-for': '10.0.0.1',
    'x-forwarded-proto': 'https',
    'x-forwarded-host': 'h.example',
    'x-request-id': 'r1'
  })
  const kept = upstreamHeaders({ ...inbound }, { ...ctx, stripCredentialHeader: false })
  t.equal(kept['x-api-key'], 'hg_pat_abc', 'the authenticating header stays when configured to')
  const pub = upstreamHeaders({ 'x-api-key': 'junk', authorization: 'Bearer hg_key_00' }, { ...ctx, auth: null })
  t.notOk('x-api-key' in pub)
  t.notOk('authorization' in pub)
  t.notOk('x-hg-role' in pub)
})

function raw (port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.end(text))
    let out = ''
    socket.setEncoding('latin1')
    socket.on('data', d => { out += d })
    socket.on('close', () => resolve(out))
    socket.on('error', reject)
    socket.setTimeout(5000, () => socket.destroy())
  })
}

function jsonBody (response: string): unknown {
  return JSON.parse(response.slice(response.indexOf('\r\n\r\n') + 4))
}

t.test('item 14: parser errors, 431 and 405 answer the contract body', async t => {
  const env = await startStack(t)
  const bad = await raw(env.port, 'GET /api/scans HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n')
  t.match(bad, /^HTTP\/1\.1 400 /)
  t.same(jsonBody(bad), { error: 'bad_request', message: 'Malformed request' })
  const big = await raw(env.port, `GET /api/scans HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(64 * 1024)}\r\n\r\n`)
  t.match(big, /^HTTP\/1\.1 431 /)
  t.same(jsonBody(big), { error: 'bad_request', message: 'The request headers are too large' })
  const pat = await env.mintPat({ role: 'viewer' })
  const res = await env.request('/api/personal-access-tokens', { method: 'POST', headers: { 'x-api-key': pat.token } })
  t.equal(res.statusCode, 405)
  t.same(res.json(), { error: 'method_not_allowed', message: 'Method not allowed' })
  t.equal(res.headers.allow, 'GET, HEAD')
  for (const port of [env.opsPort, env.adminPort]) {
    const nf = await raw(port, 'GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
    t.same(jsonBody(nf), { error: 'not_found', message: 'Not found' }, `404 on port ${port}`)
  }
})

t.test('item 15: a failed upstream is logged with its cause, not [object Object]', async t => {
  const closed = net.createServer()
  await new Promise<void>(resolve => closed.listen(0, '127.0.0.1', resolve))
  const port = (closed.address() as net.AddressInfo).port
  await new Promise<void>(resolve => closed.close(() => resolve()))
  const env = await startStack(t, { config: { routes: [{ prefix: '/gone', upstream: `http://127.0.0.1:${port}`, public: true }] } })
  const res = await env.request('/gone/x')
  t.equal(res.statusCode, 502)
  t.same(res.json(), { error: 'bad_gateway', message: 'The upstream service could not be reached' })
  const line = env.logs.records().find(r => r.msg === 'upstream failed')
  const text = JSON.stringify(line)
  t.notMatch(text, /\[object Object\]/)
  t.match(text, /ECONNREFUSED/)
})
