import { createHash, randomBytes } from 'node:crypto'
import http from 'node:http'
import t from 'tap'
import { startStack } from '../helpers/stack.js'

t.test('a valid PAT passes with exactly the contract identity headers', async t => {
  const env = await startStack(t)
  const pat = await env.mintPat({ role: 'admin', permissions: ['scans:read', 'scans:write'] })
  const res = await env.request('/api/scans/42?x=1', {
    headers: {
      'X-API-Key': pat.token,
      'X-HG-Role': 'owner',
      'x-hg-user-id': ['forged-1', 'forged-2'],
      'X-Hg-Permissions': 'org:manage',
      'X-HG-AUTH-TYPE': 'api_key',
      'x-hg-anything-else': 'forged',
      'x-request-id': 'client-req-1'
    }
  })
  t.equal(res.statusCode, 200)
  const seen = env.upstream.requests.at(-1)
  if (seen === undefined) throw new Error('upstream saw nothing')
  const hg = Object.fromEntries(Object.entries(seen.headers).filter(([k]) => k.startsWith('x-hg-')))
  t.same(hg, {
    'x-hg-auth-type': 'pat',
    'x-hg-user-id': pat.userId,
    'x-hg-org-id': pat.orgId,
    'x-hg-role': 'admin',
    'x-hg-permissions': 'scans:read,scans:write',
    'x-hg-credential-id': pat.id,
    'x-hg-credential-prefix': pat.prefix
  })
  // Each identity header once on the wire: the forged ones were removed, not joined.
  const rawNames = seen.rawHeaders.filter((_, i) => i % 2 === 0).map(h => h.toLowerCase())
  t.equal(rawNames.filter(h => h.startsWith('x-hg-')).length, 7)
  t.notOk('x-api-key' in seen.headers, 'credential header removed')
  t.equal(seen.headers['x-request-id'], 'client-req-1')
  t.equal(seen.headers['x-forwarded-for'], '127.0.0.1')
  t.equal(seen.headers['x-forwarded-proto'], 'http')
  t.match(seen.headers['x-forwarded-host'], /^127\.0\.0\.1:\d+$/)
  t.equal(res.headers['x-hg-token-expires'], pat.expiresAt)
})

t.test('Authorization: Bearer is accepted and removed; an insane request id is replaced', async t => {
  const env = await startStack(t)
  const pat = await env.mintPat()
  const res = await env.request('/api/scans', { headers: { authorization: `Bearer ${pat.token}`, 'x-request-id': 'bad id with spaces' } })
  t.equal(res.statusCode, 200)
  const seen = env.upstream.requests.at(-1)
  t.notOk(seen?.headers.authorization)
  t.match(seen?.headers['x-request-id'], /^[0-9a-f-]{36}$/)
})

t.test('Connection cannot make the proxy drop injected headers', async t => {
  const env = await startStack(t)
  const pat = await env.mintPat()
  const res = await env.request('/api/scans', {
    headers: { 'x-api-key': pat.token, connection: 'keep-alive, x-hg-user-id, x-hg-role, x-forwarded-for, x-request-id' }
  })
  t.equal(res.statusCode, 200)
  const seen = env.upstream.requests.at(-1)
  t.equal(seen?.headers['x-hg-user-id'], pat.userId)
  t.equal(seen?.headers['x-hg-role'], 'member')
  t.ok(seen?.headers['x-forwarded-for'])
  t.ok(seen?.headers['x-request-id'])
})

t.test('bodies stream through unchanged; methods, query strings, status, headers and body come back unchanged', async t => {
  const env = await startStack(t)
  const pat = await env.mintPat({ role: 'member' })
  const size = 10 * 1024 * 1024
  const chunk = randomBytes(64 * 1024)
  const expected = createHash('sha256')
  for (let i = 0; i < size / chunk.length; i++) expected.update(chunk)
  async function * body (): AsyncGenerator<Buffer> {
    for (let i = 0; i < size / chunk.length; i++) yield chunk
  }
  const res = await env.request('/api/scans/upload?b=2&a=1&a=0&sp=%20x&empty=', {
    method: 'PUT',
    headers: { 'x-api-key': pat.token, 'content-type': 'application/octet-stream', 'transfer-encoding': 'chunked' },
    body: body()
  })
  t.equal(res.statusCode, 200)
  const seen = res.json<{ method: string, url: string, bodyBytes: number, bodySha256: string }>()
  t.equal(seen.method, 'PUT')
  t.equal(seen.url, '/api/scans/upload?b=2&a=1&a=0&sp=%20x&empty=')
  t.equal(seen.bodyBytes, size)
  t.equal(seen.bodySha256, expected.digest('hex'))

  // A JSON body and text body are streamed too, not parsed.
  for (const type of ['application/json', 'text/plain']) {
    const r = await env.request('/api/scans', { method: 'POST', headers: { 'x-api-key': pat.token, 'content-type': type }, body: '{"not": "parsed",' })
    t.equal(r.statusCode, 200, type)
    t.equal(r.json<{ bodyBytes: number }>().bodyBytes, 17)
  }

  for (const method of ['GET', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD']) {
    const r = await env.request('/api/scans/m', { method, headers: { 'x-api-key': pat.token } })
    t.equal(r.statusCode, 200, method)
    t.equal(env.upstream.requests.at(-1)?.method, method)
  }

  env.upstream.handle = (_req, res) => {
    res.statusCode = 418
    res.setHeader('content-type', 'text/x-teapot')
    res.setHeader('x-custom', 'kept')
    res.setHeader('set-cookie', ['a=1', 'b=2'])
    res.end('short and stout')
  }
  const r = await env.get('/api/scans/pot', pat.token)
  t.equal(r.statusCode, 418)
  t.equal(r.headers['content-type'], 'text/x-teapot')
  t.equal(r.headers['x-custom'], 'kept')
  t.same(r.headers['set-cookie'], ['a=1', 'b=2'])
  t.equal(r.text, 'short and stout')
})

t.test('upstream refused is 502, upstream too slow is 504, both as JSON', async t => {
  const closed = http.createServer()
  await new Promise<void>(resolve => closed.listen(0, '127.0.0.1', resolve))
  const deadPort = (closed.address() as { port: number }).port
  await new Promise<void>(resolve => closed.close(() => resolve()))

  const env = await startStack(t, { config: { upstream: { timeoutMs: 300 } } })
  const pat = await env.mintPat()
  env.upstream.handle = () => { /* never answers */ }
  const slow = await env.get('/api/scans', pat.token)
  t.equal(slow.statusCode, 504)
  t.same(slow.json(), { error: 'gateway_timeout', message: 'The upstream service did not answer in time' })

  const env2 = await startStack(t, { config: { routes: [{ prefix: '/', upstream: `http://127.0.0.1:${deadPort}` }] } })
  const pat2 = await env2.mintPat()
  const refused = await env2.get('/anything', pat2.token)
  t.equal(refused.statusCode, 502)
  t.same(refused.json(), { error: 'bad_gateway', message: 'The upstream service could not be reached' })
})
