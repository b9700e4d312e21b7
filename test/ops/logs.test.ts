import t from 'tap'
import { leakedLines, startStack } from '../helpers/stack.js'

t.test('one JSON line per request with the contract fields; no secret, Authorization or X-API-Key value', async t => {
  const env = await startStack(t)
  const pat = await env.mintPat()
  await env.get('/api/scans?token=' + pat.token, pat.token, { cookie: 'session=cookie-secret-value', authorization: 'Basic dXNlcjpwYXNzd29yZA==' })
  await env.request(`/api/scans/${pat.token}`, { headers: { authorization: `Bearer ${pat.token}` } })
  await env.get('/api/scans', pat.token.slice(0, -1) + '0')
  await env.get('/api/scans', 'not-a-token-value-x9')
  await env.get('/api/scans/%2e%2e/x', pat.token)
  await env.get('/api/status')

  const lines = env.logs.records().filter(r => r.msg === 'request')
  t.equal(lines.length, 6, 'one line per request')
  for (const l of lines) {
    for (const k of ['reqId', 'method', 'path', 'status', 'ms', 'credType', 'prefix', 'outcome', 'time', 'level']) t.ok(k in l, `${k} in ${JSON.stringify(l)}`)
    t.notMatch(String(l.path), /\?/, 'no query string')
  }
  t.match(lines[0], { method: 'GET', path: '/api/scans', status: 200, credType: 'pat', prefix: pat.prefix, outcome: 'ok' })
  t.match(lines[1], { path: `/api/scans/${pat.prefix}…`, status: 200 }, 'a credential in the path is masked')
  t.match(lines[2], { status: 401, outcome: /bad_secret|unknown/ })
  t.match(lines[3], { status: 401, outcome: 'malformed', prefix: null })
  t.match(lines[4], { status: 400, outcome: 'bad_request' })
  t.match(lines[5], { status: 200, outcome: 'public', credType: null })

  const all = env.logs.lines.join('\n')
  t.same(leakedLines(env.logs.lines), [], 'no credential in any line')
  for (const secret of [pat.token.slice(10), 'cookie-secret-value', 'dXNlcjpwYXNzd29yZA==', 'not-a-token-value-x9']) t.notMatch(all, secret)
})
