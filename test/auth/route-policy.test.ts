import fc from 'fast-check'
import t from 'tap'
import { startUpstream } from '../helpers/http.js'
import { startStack } from '../helpers/stack.js'

t.test('route policy through real HTTP: permissions, public routes, defaultDeny, upstreams by prefix', async t => {
  const other = await startUpstream(t)
  const env = await startStack(t, {
    config: {
      defaultDeny: true,
      routes: [
        { prefix: '/api/scans', rules: [{ methods: ['GET', 'HEAD'], permission: 'scans:read' }, { methods: ['POST', 'PUT', 'PATCH', 'DELETE'], permission: 'scans:write' }] },
        { prefix: '/api/status', public: true },
        { prefix: '/reports', upstream: other.url, rules: [{ methods: ['GET'], permission: 'reports:read' }] }
      ]
    }
  })
  const viewer = await env.mintPat({ role: 'viewer' })
  const member = await env.mintPat({ role: 'member' })

  const post = (token: string): Promise<{ statusCode: number, headers: Record<string, unknown>, json: () => Record<string, unknown> }> =>
    env.request('/api/scans', { method: 'POST', headers: { 'x-api-key': token }, body: '{}' })
  const vPost = await post(viewer.token)
  t.equal(vPost.statusCode, 403)
  t.same(vPost.json(), { error: 'forbidden', message: 'This route needs the permission scans:write' })
  t.equal(vPost.headers['x-hg-required-permission'], 'scans:write')
  t.equal((await post(member.token)).statusCode, 200)

  const pub = await env.request('/api/status/health', { headers: { 'x-hg-user-id': 'forged', 'X-HG-ROLE': 'owner' } })
  t.equal(pub.statusCode, 200, 'public: no credential needed')
  const seen = env.upstream.requests.at(-1)
  t.same(Object.keys(seen?.headers ?? {}).filter(h => h.startsWith('x-hg-')), [], 'x-hg-* still stripped on a public route')
  for (const headers of [{ 'x-api-key': member.token }, { authorization: `Bearer ${member.token}` }]) {
    t.equal((await env.request('/api/status', { headers })).statusCode, 200)
    const h = env.upstream.requests.at(-1)?.headers ?? {}
    t.notOk('x-api-key' in h || 'authorization' in h, 'a credential sent to a public route is not forwarded')
  }
  t.equal((await env.request('/api/status', { headers: { authorization: 'Basic dXNlcjpwdw==' } })).statusCode, 200)
  t.equal(env.upstream.requests.at(-1)?.headers.authorization, 'Basic dXNlcjpwdw==', 'other Authorization schemes pass')

  const denied = await env.get('/somewhere/else', member.token)
  t.equal(denied.statusCode, 403, 'defaultDeny: no route matches')
  t.equal(denied.json().error, 'forbidden')
  t.equal((await env.request('/api/scans', { method: 'OPTIONS', headers: { 'x-api-key': member.token } })).statusCode, 403, 'defaultDeny: no rule matches')

  const before = env.upstream.requests.length
  const rep = await env.get('/reports/7?x=1', viewer.token)
  t.equal(rep.statusCode, 200)
  t.equal(other.requests.at(-1)?.url, '/reports/7?x=1', 'routed to the route\'s own upstream')
  t.equal(other.requests.at(-1)?.headers['x-hg-role'], 'viewer')
  t.equal(env.upstream.requests.length, before)
})

t.test('path tricks are 400 and never reach the upstream (property test over generated paths)', async t => {
  const env = await startStack(t)
  const pat = await env.mintPat({ role: 'owner' })
  const fixed = ['/api/scans/..%2Fadmin', '/api/%2e%2e/x', '/api/scans%5cadmin', '/api/scans%00', '/api/scans/../admin', '/api/./scans', '/api/scans/%2E%2e/', '/api/%252e%252e/admin', '/api/scans/..;/admin']
  for (const path of fixed) {
    const res = await env.get(path, pat.token)
    t.equal(res.statusCode, 400, path)
    t.same(res.json(), { error: 'bad_request', message: 'Ambiguous or malformed request path' }, path)
  }
  t.equal(env.upstream.requests.length, 0)

  const trick = fc.constantFrom('..', '.', '%2e%2e', '%2E.', '.%2e', '%2f', '%2F', '%5c', '%5C', '%00', '..;', '%252e', '%25')
  const plain = fc.constantFrom('api', 'scans', 'admin', 'x', 'a.b', '...', '%41')
  const pathArb = fc.tuple(fc.array(plain, { maxLength: 3 }), trick, fc.array(fc.oneof(plain, trick), { maxLength: 3 }))
    .map(([a, tr, b]) => '/' + [...a, tr, ...b].join('/'))
  const samples = fc.sample(pathArb, { numRuns: 150, seed: 42 })
  let refused = 0
  for (const path of samples) {
    const res = await env.get(path, pat.token)
    if (res.statusCode === 400) refused++
    else t.fail(`${path} was not refused: ${res.statusCode}`)
  }
  t.equal(refused, samples.length, `${refused} generated tricky paths refused`)
  t.equal(env.upstream.requests.length, 0, 'none reached the upstream')
})
