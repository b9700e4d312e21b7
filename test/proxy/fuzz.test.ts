import { randomBytes } from 'node:crypto'
import http from 'node:http'
import net, { type AddressInfo } from 'node:net'
import fc from 'fast-check'
import t from 'tap'
import { SELF_SERVICE_PREFIXES } from '../../src/api/self-service.js'
import { routeOf } from '../../src/auth/pipeline.js'
import { createPolicy } from '../../src/auth/policy.js'
import { request } from '../helpers/http.js'
import { rememberSecret, startStack } from '../helpers/stack.js'
import type { Upstream } from '../helpers/http.js'

/**
 * docs/DESIGN.md §2 and §2.1 under a fuzzer (issue 17, "Also"): raw request
 * lines, header sets and credential values against a real sidecar on real
 * PostgreSQL and Redis. Invariants: no 5xx but 502/503/504; nothing reaches the
 * upstream on a protected route without a credential that allows it; the
 * process answers health checks and valid requests afterwards. Bounded: a
 * fixed number of runs (HG_FUZZ_RUNS, default 300), each request with a short
 * deadline, and 25 s at most. HG_FUZZ_DEBUG=<status> prints the cases answered so.
 */

const RUNS = Number(process.env.HG_FUZZ_RUNS ?? 300)

interface Seen { tag: string | null, method: string, url: string }

/** An upstream that records a request when its head arrives (a body that never ends still counts) and upgrades. */
async function recordingUpstream (t: { teardown(fn: () => unknown): void }): Promise<{ upstream: Upstream, seen: Seen[] }> {
  const seen: Seen[] = []
  const tagOf = (url: string, headers: http.IncomingHttpHeaders): string | null =>
    /[?&]fz=(\d+s?)$/.exec(url)?.[1] ?? (typeof headers['x-fuzz-case'] === 'string' ? headers['x-fuzz-case'] : null)
  const server = http.createServer((req, res) => {
    seen.push({ tag: tagOf(req.url ?? '', req.headers), method: req.method ?? '', url: req.url ?? '' })
    req.resume()
    req.on('end', () => res.end('ok'))
  })
  server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket) => {
    seen.push({ tag: tagOf(req.url ?? '', req.headers), method: 'UPGRADE', url: req.url ?? '' })
    socket.destroy()
  })
  server.on('clientError', (_err, socket) => socket.destroy())
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  const upstream: Upstream = {
    url: `http://127.0.0.1:${port}`,
    port,
    requests: [],
    handle: null,
    close: () => new Promise<void>(resolve => { server.closeAllConnections(); server.close(() => resolve()) })
  }
  t.teardown(() => upstream.close())
  return { upstream, seen }
}

/** Sends raw bytes; resolves with what came back once the answer looks complete, the peer closes, or the deadline passes. */
function exchange (port: number, bytes: Buffer): Promise<string> {
  return new Promise(resolve => {
    const socket = net.connect(port, '127.0.0.1')
    let out = ''
    let done = false
    const finish = (): void => {
      if (done) return
      done = true
      clearTimeout(deadline)
      clearTimeout(idle)
      socket.destroy()
      resolve(out)
    }
    const deadline = setTimeout(finish, 2000)
    let idle = setTimeout(finish, 1000)
    socket.on('data', (d: Buffer) => {
      out += d.toString('latin1')
      clearTimeout(idle)
      idle = setTimeout(finish, complete(out) ? 30 : 500)
    })
    socket.on('close', finish)
    socket.on('error', finish)
    socket.write(bytes)
  })
}

/** The last final (non-1xx) response in the buffer has its whole body. */
function complete (buf: string): boolean {
  const heads = [...buf.matchAll(/HTTP\/1\.[01] (\d{3})[^\r\n]*\r\n([\s\S]*?)\r\n\r\n/g)]
  const last = heads.filter(m => !(m[1] as string).startsWith('1')).at(-1)
  if (last === undefined) return false
  const start = (last.index ?? 0) + last[0].length
  const len = /(?:^|\r\n)content-length:\s*(\d+)/i.exec(last[2] as string)
  if (len !== null) return buf.length - start >= Number(len[1])
  if (/transfer-encoding:\s*chunked/i.test(last[2] as string)) return buf.endsWith('0\r\n\r\n')
  return true
}

function safeDecode (s: string): string {
  try {
    return decodeURIComponent(s)
  } catch {
    return s
  }
}

t.test('fuzz: raw requests, header sets and credential values', async t => {
  const { upstream, seen } = await recordingUpstream(t)
  const env = await startStack(t, { upstream })
  const viewer = await env.mintPat({ role: 'viewer' })
  const member = await env.mintPat({ orgId: viewer.orgId, role: 'member' })
  const admin = await env.mintPat({ orgId: viewer.orgId, role: 'admin' })
  const key = await env.service.createApiKey({ orgId: viewer.orgId, createdBy: admin.userId, name: 'fuzz', role: 'member' })
  rememberSecret(key.token)
  await env.sql.query('UPDATE personal_access_tokens SET revoked_at = now() WHERE id = $1', [admin.id])
  const roles = new Map(env.config.roles.map(r => [r.name, new Set(r.permissions)]))
  /** The credentials that may pass, with what they may do. The admin PAT is revoked: it may not. */
  const valid = new Map<string, Set<string>>([[viewer.token, roles.get('viewer') as Set<string>], [member.token, roles.get('member') as Set<string>], [key.token, roles.get('member') as Set<string>]])
  const policy = createPolicy(env.config, SELF_SERVICE_PREFIXES)

  // --- generators ---
  const liveToken = fc.constantFrom(viewer.token, member.token, key.token, admin.token)
  const credential = fc.oneof(
    { weight: 4, arbitrary: liveToken },
    { weight: 2, arbitrary: fc.tuple(liveToken, fc.nat(54), fc.constantFrom('0', 'f', 'A', ' ', '%', 'g')).map(([tok, i, c]) => tok.slice(0, i) + c + tok.slice(i + 1)) },
    { weight: 1, arbitrary: liveToken.map(tok => tok.toUpperCase()) },
    { weight: 1, arbitrary: fc.tuple(liveToken, fc.nat(54)).map(([tok, n]) => tok.slice(0, n)) },
    { weight: 1, arbitrary: liveToken.map(tok => tok + '0') },
    { weight: 1, arbitrary: liveToken.map(tok => `${tok}, ${tok}`) },
    { weight: 1, arbitrary: liveToken.map(tok => `%${tok.charCodeAt(0).toString(16)}${tok.slice(1)}`) },
    { weight: 2, arbitrary: fc.constantFrom('pat', 'key').map(k => `hg_${k}_${randomBytes(24).toString('hex')}`) },
    { weight: 1, arbitrary: liveToken.map(tok => tok.slice(0, 10) + randomBytes(23).toString('hex').slice(0, 45)) },
    { weight: 1, arbitrary: fc.string({ maxLength: 70 }).map(s => s.replace(/[\r\n]/g, '')) },
    { weight: 1, arbitrary: fc.constant('') }
  )
  const segment = fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom('api', 'api', 'scans', 'reports', 'status', 'personal-access-tokens', 'api-keys', 'API', 'Scans', 'STATUS', '1', 'x.json', 'scans.json') },
    {
      weight: 1,
      arbitrary: fc.constantFrom('..', '.', '%2e%2e', '%2E', '%2f', '%2F', '%5c', '%00', '%25', '%252e', ';v=1', '%3b', '%20', '%C2%A0', '%C5%BFcans', '\\', '', 'a b', '%zz', '%', '#f', 'é', '%68g_pat_' + 'ab'.repeat(24))
    }
  )
  const path = fc.oneof(
    { weight: 6, arbitrary: fc.array(segment, { minLength: 1, maxLength: 4 }).map(s => '/' + s.join('/')) },
    { weight: 3, arbitrary: fc.tuple(fc.constantFrom('/api/scans', '/api/status', '/api/reports', '/API/Scans', '/api/scans.json', '/api/personal-access-tokens'), fc.array(segment, { maxLength: 2 })).map(([p, s]) => [p, ...s].join('/')) },
    { weight: 1, arbitrary: fc.constantFrom('*', 'http://evil.example/api/scans', '//api/scans', '/api/status/../scans', '/api/status/..%2fscans', '/api/status%2f..%2fscans', '/api/status/%2e%2e/scans', '/api/status;/../scans') },
    { weight: 1, arbitrary: fc.string({ maxLength: 40 }).map(s => '/' + s.replace(/[\r\n ]/g, '')) }
  )
  const query = fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom('', '?next=../../x', '?u=%2F%2e%2e', '?a=1&a=2', '?token=' + viewer.token, '?') },
    { weight: 1, arbitrary: fc.constantFrom('?x=%zz', '?q=a#b') }
  )
  const method = fc.oneof(
    { weight: 8, arbitrary: fc.constantFrom('GET', 'GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS') },
    { weight: 1, arbitrary: fc.constantFrom('TRACE', 'CONNECT', 'PROPFIND', 'get', 'G ET', '') }
  )
  const version = fc.oneof(
    { weight: 8, arbitrary: fc.constantFrom('HTTP/1.1', 'HTTP/1.0') },
    { weight: 1, arbitrary: fc.constantFrom('HTTP/2.0', 'HTTP/1.1 ', 'http/1.1', 'HTTP/1.1\r\n', '') }
  )
  const credentialHeader = fc.oneof(
    { weight: 4, arbitrary: credential.map(c => `X-API-Key: ${c}`) },
    { weight: 3, arbitrary: fc.tuple(fc.constantFrom('Bearer ', 'bearer ', 'Bearer\t', 'Bearer  ', 'Basic ', 'Token '), credential).map(([s, c]) => `Authorization: ${s}${c}`) },
    { weight: 1, arbitrary: credential.map(c => `x-api-key:${c}`) },
    { weight: 1, arbitrary: credential.map(c => `X-Other: ${c}`) }
  )
  const otherHeader = fc.oneof(
    {
      weight: 4,
      arbitrary: fc.constantFrom(
        'X-HG-Role: owner', 'x_hg_role: owner', 'X-Hg_Permissions: org:manage', 'x-hg-: x', 'X-HG-User-Id: 00000000-0000-0000-0000-000000000000',
        'X-Forwarded-For: 1.2.3.4', 'Forwarded: for=1.2.3.4', 'X-Original-URL: /api/scans', 'X-Rewrite-URL: /api/scans', 'X-HTTP-Method-Override: DELETE',
        'Connection: x-api-key', 'Connection: close', 'Connection: keep-alive, x-hg-role', 'Connection: authorization', 'Keep-Alive: timeout=5', 'TE: trailers', 'Proxy-Authorization: x',
        'Transfer-Encoding: chunked', 'Content-Length: 5', 'Content-Length: 0', 'Expect: 100-continue', 'Upgrade: websocket', 'Connection: Upgrade',
        'Sec-WebSocket-Version: 13', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==', 'Host: evil.example', 'X-Request-Id: ' + viewer.token, 'X-Request-Id: ok-1'
      )
    },
    {
      weight: 1,
      arbitrary: fc.constantFrom(
        'Transfer-Encoding: chunked, identity', 'Transfer-Encoding : chunked', 'Content-Length: 5, 5', 'Content-Length: -1', 'Content-Length: 99999999999999999999',
        'Host: a', ' X-API-Key: folded', 'X-Folded: a\r\n b', 'Bad Header: x', 'X-Long: ' + 'a'.repeat(20_000), ':authority: x', 'X-Bare-LF: a\nX-API-Key: x'
      )
    }
  )
  const body = fc.constantFrom('', '', 'hello', '5\r\nhello\r\n0\r\n\r\n', '0\r\n\r\n', 'x'.repeat(100))
  const smuggled = fc.constantFrom('', '', '', 'GET /api/scans?fz=SMUGGLED HTTP/1.1\r\nHost: x\r\n\r\n', 'POST /api/scans?fz=SMUGGLED HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n')

  let n = 0
  const fiveHundreds: string[] = []
  /** Why each tagged request may reach the upstream, or null when it may not. */
  const mayPass = new Map<string, boolean>()
  const statuses = new Map<string, number>()

  /** Half the cases are hostile anywhere; half are well-formed requests with hostile details, which do reach the upstream. */
  const hostile = fc.tuple(method, path, query, version, fc.tuple(fc.array(credentialHeader, { maxLength: 2 }), fc.array(otherHeader, { maxLength: 4 })).map(([c, o]) => [...c, ...o]), body, smuggled)
  const plausible = fc.tuple(
    fc.constantFrom('GET', 'HEAD', 'POST', 'DELETE', 'PUT'),
    fc.tuple(fc.constantFrom('/api/scans', '/api/status', '/api/reports', '/API/Scans', '/api/scans.json', '/api/Status', '/other', '/api/personal-access-tokens'), fc.array(fc.constantFrom('1', 'x', 'Scans', 'status', 'a.json'), { maxLength: 2 })).map(([p, s]) => [p, ...s].join('/')),
    fc.constantFrom('', '?next=../../x', '?a=1'),
    fc.constant('HTTP/1.1'),
    fc.tuple(fc.oneof(liveToken.map(tok => [`X-API-Key: ${tok}`]), credentialHeader.map(h => [h]), fc.constant([])), fc.array(otherHeader.filter(h => !h.startsWith('Content-Length') && !h.startsWith('Transfer-Encoding') && !h.startsWith('Host')), { maxLength: 3 })).map(([c, o]) => [...c, ...o]),
    fc.constant(''),
    smuggled
  )
  await fc.assert(fc.asyncProperty(fc.oneof(hostile, plausible), async ([m, p, q, v, headers, b, smuggle]) => {
    const id = String(n++)
    const target = `${p}${q}${q === '' ? '?' : '&'}fz=${id}`
    const head = [`${m} ${target} ${v}`.replace(/ $/, ''), 'Host: 127.0.0.1', ...headers, `X-Fuzz-Case: ${id}`]
    const raw = `${head.join('\r\n')}\r\n\r\n${b}${smuggle.replace('SMUGGLED', `${id}s`)}`

    // What may pass: a public route, or a present live credential whose permissions the rule accepts.
    const route = routeOf(policy, m, target)
    const present = [...valid.entries()].filter(([tok]) => headers.some(h => /^(x-api-key|authorization):/i.test(h) && h.includes(tok)))
    const d = route?.decision
    // Without a credential, only what decodes to the one public prefix; not the policy's own word for it.
    const anonymousOk = route !== null && /^\/api\/status([/.?]|$)/i.test(safeDecode(target))
    mayPass.set(id, d !== undefined && !d.local && (anonymousOk || (!d.deny && present.some(([, perms]) => d.permission === null || perms.has(d.permission)))))
    mayPass.set(`${id}s`, false)

    const answer = await exchange(env.port, Buffer.from(raw, 'latin1'))
    const status = /^HTTP\/1\.[01] (\d{3})/.exec(answer)?.[1] ?? 'none'
    statuses.set(status, (statuses.get(status) ?? 0) + 1)
    if (process.env.HG_FUZZ_DEBUG === status) t.comment(`${JSON.stringify(raw.slice(0, 200))} => ${JSON.stringify(answer.slice(0, 200))}`)
    for (const s of answer.matchAll(/HTTP\/1\.[01] (5\d\d)/g)) {
      if (!['502', '503', '504'].includes(s[1] as string)) fiveHundreds.push(`${s[1] as string} for ${JSON.stringify(raw.slice(0, 300))}`)
    }
    return true
  }), { numRuns: RUNS, interruptAfterTimeLimit: 25_000 })

  // Requests forwarded late (a bcrypt compare finishing after the client left) are counted too.
  await new Promise(resolve => setTimeout(resolve, 300))
  t.same(fiveHundreds, [], 'no 5xx but 502/503/504')
  const wrongful = seen.filter(s => s.tag === null || mayPass.get(s.tag) !== true)
  t.same(wrongful, [], `nothing reached the upstream without a credential that allows it (${seen.length} forwarded of ${n})`)
  t.ok(n >= Math.min(RUNS, 50), `${n} cases ran`)
  t.comment(`first answers: ${[...statuses.entries()].sort().map(([k, v]) => `${k}: ${v}`).join(', ')}`)

  // Healthy afterwards.
  t.equal((await request(env.opsPort, '/healthz')).statusCode, 200, 'alive')
  t.equal((await request(env.opsPort, '/readyz')).statusCode, 200, 'ready')
  t.equal((await env.get('/api/scans', viewer.token)).statusCode, 200, 'a valid request still passes')
  t.equal((await env.get('/api/scans')).statusCode, 401, 'and a missing credential is still refused')
})
