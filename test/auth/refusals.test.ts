import t from 'tap'
import { startStack, type Stack } from '../helpers/stack.js'

function counters (env: Stack): () => { db: number, cache: number, bcrypt: number } {
  let db = 0
  let cache = 0
  env.sidecar.db.onQuery(() => { db++ })
  env.sidecar.cache.onResult(() => { cache++ })
  return () => ({ db, cache, bcrypt: env.sidecar.bcrypt.compares })
}

t.test('missing and malformed credentials: 401 JSON with no Redis, PostgreSQL or bcrypt call', async t => {
  const env = await startStack(t)
  const pat = await env.mintPat()
  const read = counters(env)
  const valid = pat.token
  const cases: Array<[string, Record<string, string | string[]>]> = [
    ['missing', {}],
    ['empty', { 'x-api-key': '' }],
    ['too short', { 'x-api-key': valid.slice(0, -1) }],
    ['too long', { 'x-api-key': valid + '0' }],
    ['uppercase hex', { 'x-api-key': 'hg_pat_' + valid.slice(7).toUpperCase().replace(/[0-9]/g, 'A') }],
    ['uppercase prefix', { 'x-api-key': 'HG_PAT_' + valid.slice(7) }],
    ['other prefix', { 'x-api-key': 'hg_tok_' + valid.slice(7) }],
    ['non-hex', { 'x-api-key': valid.slice(0, -1) + 'g' }],
    ['whitespace', { 'x-api-key': ` ${valid.slice(1)}` }],
    ['duplicated header', { 'x-api-key': [valid, valid] }],
    ['bearer and x-api-key', { 'x-api-key': valid, authorization: `Bearer ${valid}` }],
    ['duplicated bearer', { authorization: [`Bearer ${valid}`, `Bearer ${valid}`] }],
    ['basic auth is no credential', { authorization: 'Basic dXNlcjpwYXNz' }]
  ]
  for (const [name, headers] of cases) {
    const res = await env.request('/api/scans', { headers })
    t.equal(res.statusCode, 401, name)
    t.match(res.headers['content-type'], /^application\/json/, name)
    t.same(res.json(), { error: 'unauthorized', message: 'Invalid or inactive credential' }, name)
  }
  t.same(read(), { db: 0, cache: 0, bcrypt: 0 }, 'no I/O and no bcrypt for malformed credentials')
  t.equal(env.upstream.requests.length, 0, 'nothing reached the upstream')

  const noQuery = await env.request(`/api/scans?api_key=${valid}&x-api-key=${valid}`)
  t.equal(noQuery.statusCode, 401, 'credentials are never read from the query string')
})

t.test('unknown and wrong-secret credentials are 401 with the same body', async t => {
  const env = await startStack(t)
  const pat = await env.mintPat()
  const last = pat.token.at(-1) === '0' ? '1' : '0'
  const wrongSecret = pat.token.slice(0, -1) + last
  const unknownPrefix = pat.prefix === 'hg_pat_fff' ? 'hg_pat_000' : 'hg_pat_fff'
  const unknown = unknownPrefix + pat.token.slice(10)
  for (const [name, token] of [['wrong secret', wrongSecret], ['unknown', unknown]] as const) {
    const res = await env.get('/api/scans', token)
    t.equal(res.statusCode, 401, name)
    t.same(res.json(), { error: 'unauthorized', message: 'Invalid or inactive credential' }, name)
  }
  const compares = env.sidecar.bcrypt.compares
  const again = await env.get('/api/scans', wrongSecret)
  t.equal(again.statusCode, 401)
  t.equal(env.sidecar.bcrypt.compares, compares, 'a failed secret is remembered briefly: no second bcrypt')
  t.equal(env.upstream.requests.length, 0)
})

t.test('too many failures from one address: 429 with Retry-After, before any lookup', async t => {
  const env = await startStack(t, { config: { auth: { rateLimit: { maxFailures: 3, windowSeconds: 60 } } } })
  const pat = await env.mintPat()
  for (let i = 0; i < 3; i++) t.equal((await env.get('/api/scans', 'hg_pat_nope')).statusCode, 401)
  const limited = await env.get('/api/scans', pat.token)
  t.equal(limited.statusCode, 429)
  t.equal(limited.json().error, 'rate_limited')
  t.ok(Number(limited.headers['retry-after']) > 0)
})
