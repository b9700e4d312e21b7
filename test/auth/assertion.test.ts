import { execFile } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import http, { type IncomingHttpHeaders } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { decodeProtectedHeader, exportJWK, generateKeyPair, importJWK, jwtVerify, SignJWT, type JWK, type JWTPayload } from 'jose'
import t from 'tap'
import WebSocket, { WebSocketServer } from 'ws'
import { createVerifier } from '../../examples/assertion/verify.mjs'
import { request } from '../helpers/http.js'
import { rememberSecret, startStack, type Stack, type StackOptions } from '../helpers/stack.js'

const AUDIENCE = 'scan-api'
const PY_VERIFIER = fileURLToPath(new URL('../../examples/assertion/verify.py', import.meta.url))
// Debian's python3-jwt lives with the system interpreter (.ci/run installs it).
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3'

interface Tap { teardown(fn: () => unknown): void }

function tempDir (t: Tap): string {
  const dir = mkdtempSync(join(tmpdir(), 'hg-assertion-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

function withAssertion (config: StackOptions['config'] = {}, assertion: Record<string, unknown> = {}): StackOptions['config'] {
  return { ...config, assertion: { enabled: true, audience: AUDIENCE, ...assertion } }
}

function jwksUrl (env: Stack): string {
  return `http://127.0.0.1:${env.opsPort}/.well-known/jwks.json`
}

async function jwks (env: Stack): Promise<{ keys: Array<JWK & { kid: string }> }> {
  const res = await request(env.opsPort, '/.well-known/jwks.json')
  if (res.statusCode !== 200) throw new Error(`JWKS answered ${res.statusCode}`)
  return res.json()
}

function lastUpstreamHeaders (env: Stack): IncomingHttpHeaders {
  const h = env.upstream.requests.at(-1)?.headers
  if (h === undefined) throw new Error('nothing reached the upstream')
  return h
}

function assertionOf (h: IncomingHttpHeaders): string {
  const a = h['x-hg-assertion']
  if (typeof a !== 'string') throw new Error('no x-hg-assertion')
  return a
}

/** The claims an assertion must carry, read off the identity headers of the same request. */
function claimsFromHeaders (h: IncomingHttpHeaders): Record<string, unknown> {
  const type = h['x-hg-auth-type']
  return {
    iss: 'hg-auth-sidecar',
    aud: AUDIENCE,
    sub: type === 'pat' ? h['x-hg-user-id'] : h['x-hg-credential-id'],
    org: h['x-hg-org-id'],
    role: h['x-hg-role'],
    permissions: String(h['x-hg-permissions']).split(','),
    cred_type: type,
    cred_id: h['x-hg-credential-id']
  }
}

function identity (payload: JWTPayload): Record<string, unknown> {
  const { iat: _iat, exp: _exp, ...rest } = payload
  return rest
}

function pyVerify (url: string, token: string): Promise<{ code: number, stdout: string, stderr: string }> {
  return new Promise(resolve => {
    const child = execFile(PYTHON, [PY_VERIFIER, url, AUDIENCE], { timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr })
    })
    child.stdin?.end(token)
  })
}

t.test('a PAT and an API key: the assertion verifies against the JWKS of the same sidecar and states the identity headers', async t => {
  const env = await startStack(t, { config: withAssertion() })
  const verify = createVerifier({ jwksUrl: jwksUrl(env), audience: AUDIENCE })

  const pat = await env.mintPat({ role: 'member' })
  t.equal((await env.get('/api/scans/1', pat.token)).statusCode, 200)
  const patHeaders = lastUpstreamHeaders(env)
  const patAssertion = assertionOf(patHeaders)
  const patClaims = await verify({ 'x-hg-assertion': patAssertion })
  t.same(identity(patClaims), claimsFromHeaders(patHeaders), 'PAT: claims equal the headers')
  t.equal(patClaims.sub, pat.userId, 'sub is the user id')
  t.same(patClaims.permissions, ['reports:read', 'reports:write', 'scans:read', 'scans:write'], 'sorted array')
  t.equal(patClaims.cred_type, 'pat')
  t.ok(typeof patClaims.iat === 'number' && patClaims.exp === patClaims.iat + 300, 'exp = iat + 300 s')
  const header = decodeProtectedHeader(patAssertion)
  t.equal(header.alg, 'EdDSA')
  t.equal(header.kid, (await jwks(env)).keys[0]?.kid, 'kid of the published key')

  const admin = await env.createUser()
  await env.addMember(pat.orgId, admin, 'admin')
  const key = await env.service.createApiKey({ orgId: pat.orgId, createdBy: admin, name: 'ci', role: 'viewer', permissions: ['scans:read'] })
  rememberSecret(key.token)
  t.equal((await env.get('/api/scans/1', key.token)).statusCode, 200)
  const keyHeaders = lastUpstreamHeaders(env)
  const keyClaims = await verify({ 'x-hg-assertion': assertionOf(keyHeaders) })
  t.same(identity(keyClaims), claimsFromHeaders(keyHeaders), 'API key: claims equal the headers')
  t.equal(keyClaims.sub, key.id, 'sub is the key id')
  t.equal(keyClaims.cred_type, 'api_key')
  t.same(keyClaims.permissions, ['scans:read'])

  const py = await pyVerify(jwksUrl(env), patAssertion)
  t.equal(py.code, 0, `the Python example verifies it too: ${py.stderr}`)
  if (py.code === 0) t.same(identity(JSON.parse(py.stdout) as JWTPayload), claimsFromHeaders(patHeaders))
})

t.test('the same identity reuses its assertion; a role downgrade changes the next request\'s', async t => {
  const env = await startStack(t, { config: withAssertion() })
  const verify = createVerifier({ jwksUrl: jwksUrl(env), audience: AUDIENCE })
  const pat = await env.mintPat({ role: 'admin' })

  t.equal((await env.get('/api/scans', pat.token)).statusCode, 200)
  const first = assertionOf(lastUpstreamHeaders(env))
  t.equal((await env.get('/api/scans', pat.token)).statusCode, 200)
  t.equal(assertionOf(lastUpstreamHeaders(env)), first, 'reused while the identity is unchanged')
  t.equal((await verify({ 'x-hg-assertion': first })).role, 'admin')

  await env.addMember(pat.orgId, pat.userId, 'viewer')
  t.equal((await env.get('/api/scans', pat.token)).statusCode, 200)
  const h = lastUpstreamHeaders(env)
  const second = assertionOf(h)
  t.not(second, first, 'a new assertion after the downgrade')
  const claims = await verify({ 'x-hg-assertion': second })
  t.equal(claims.role, 'viewer')
  t.same(claims.permissions, ['reports:read', 'scans:read'])
  t.same(identity(claims), claimsFromHeaders(h))

  await env.addMember(pat.orgId, pat.userId, 'admin')
  t.equal((await env.get('/api/scans', pat.token)).statusCode, 200)
  t.equal((await verify({ 'x-hg-assertion': assertionOf(lastUpstreamHeaders(env)) })).role, 'admin', 'and back up: never an assertion of the other role')
})

t.test('expired, foreign-key, tampered and unsigned assertions fail in the example verifiers', async t => {
  const dir = tempDir(t)
  const { privateKey } = await generateKeyPair('EdDSA', { extractable: true })
  const keyFile = join(dir, 'keys.json')
  writeFileSync(keyFile, JSON.stringify({ keys: [await exportJWK(privateKey)] }))
  const env = await startStack(t, { config: withAssertion({}, { keyFile, ttlSeconds: 1 }) })
  const verify = createVerifier({ jwksUrl: jwksUrl(env), audience: AUDIENCE })
  const pat = await env.mintPat({ role: 'member' })
  t.equal((await env.get('/api/scans', pat.token)).statusCode, 200)
  const token = assertionOf(lastUpstreamHeaders(env))
  const { kid } = decodeProtectedHeader(token)
  const claims = decodeClaims(token)
  t.equal(claims.exp, (claims.iat ?? 0) + 1, 'ttlSeconds 1')

  const now = Math.floor(Date.now() / 1000)
  const sign = (payload: JWTPayload, key: CryptoKey | Uint8Array, k = kid, alg = 'EdDSA'): Promise<string> =>
    new SignJWT(payload).setProtectedHeader({ alg, kid: k, typ: 'JWT' }).sign(key)
  const fresh = { ...claims, iat: now, exp: now + 60 }
  const fails = (assertion: string, code: string, what: string): Promise<unknown> => t.rejects(verify({ 'x-hg-assertion': assertion }), { code }, what)
  t.same(identity(await verify({ 'x-hg-assertion': await sign(fresh, privateKey) })), identity(claims), 'the key file\'s key is the signing key')

  await fails(await sign({ ...claims, iat: now - 120, exp: now - 60 }, privateKey), 'ERR_JWT_EXPIRED', 'expired, signed with the sidecar\'s own key')
  const foreign = (await generateKeyPair('EdDSA')).privateKey
  await fails(await sign(fresh, foreign), 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED', 'foreign key under the sidecar\'s kid')
  await fails(await sign(fresh, foreign, 'not-a-published-kid'), 'ERR_JWKS_NO_MATCHING_KEY', 'foreign key under its own kid')
  await fails(await sign(fresh, new TextEncoder().encode('x'.repeat(32)), kid, 'HS256'), 'ERR_JOSE_ALG_NOT_ALLOWED', 'HMAC with a made-up secret')
  const [h, , s] = token.split('.')
  const forged = `${h ?? ''}.${Buffer.from(JSON.stringify({ ...fresh, role: 'owner' })).toString('base64url')}.${s ?? ''}`
  await fails(forged, 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED', 'claims changed after signing')
  const none = `${Buffer.from(JSON.stringify({ alg: 'none', kid })).toString('base64url')}.${Buffer.from(JSON.stringify(fresh)).toString('base64url')}.`
  await fails(none, 'ERR_JOSE_ALG_NOT_ALLOWED', 'alg none')
  await t.rejects(createVerifier({ jwksUrl: jwksUrl(env), audience: 'another-service' })({ 'x-hg-assertion': await sign(fresh, privateKey) }), { code: 'ERR_JWT_CLAIM_VALIDATION_FAILED' }, 'another audience')

  // The sidecar's own assertion, once its second has passed.
  await new Promise(resolve => setTimeout(resolve, 2100))
  await fails(token, 'ERR_JWT_EXPIRED', 'the sidecar\'s assertion after its exp')

  const py = await Promise.all([
    pyVerify(jwksUrl(env), await sign(fresh, privateKey)),
    pyVerify(jwksUrl(env), token),
    pyVerify(jwksUrl(env), await sign(fresh, foreign)),
    pyVerify(jwksUrl(env), await sign(fresh, foreign, 'not-a-published-kid'))
  ])
  t.equal(py[0]?.code, 0, `Python: valid passes ${py[0]?.stderr ?? ''}`)
  t.match(py[1], { code: 1, stderr: /ExpiredSignatureError/ }, 'Python: expired')
  t.match(py[2], { code: 1, stderr: /InvalidSignatureError/ }, 'Python: foreign key')
  t.match(py[3], { code: 1, stderr: /PyJWKClientError/ }, 'Python: unknown kid')
})

function decodeClaims (token: string): JWTPayload & Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as JWTPayload & Record<string, unknown>
}

t.test('an inbound x-hg-assertion never reaches the upstream', async t => {
  const forged = 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJmb3JnZWQifQ.'
  for (const enabled of [true, false]) {
    await t.test(`assertions ${enabled ? 'on' : 'off'}`, async t => {
      const env = await startStack(t, { config: enabled ? withAssertion() : {} })
      const pat = await env.mintPat({ role: 'member' })
      const seen = (): unknown => lastUpstreamHeaders(env)['x-hg-assertion']

      t.equal((await env.get('/api/status', undefined, { 'x-hg-assertion': forged })).statusCode, 200)
      t.equal(seen(), undefined, 'public route: dropped')
      t.equal((await env.get('/api/scans', pat.token, { 'x-hg-assertion': forged })).statusCode, 200)
      if (enabled) t.not(seen(), forged, 'authenticated: the sidecar\'s own replaces it')
      else t.equal(seen(), undefined, 'authenticated, assertions off: dropped')
      t.equal((await env.get('/api/scans', pat.token, { 'X-HG-Assertion': [forged, forged], Connection: 'x-hg-assertion' })).statusCode, 200)
      if (enabled) t.not(seen(), forged, 'repeated, in another case, named in Connection')
      else t.equal(seen(), undefined, 'repeated, in another case, named in Connection')
    })
  }
})

t.test('rotation: the JWKS publishes every key of the file, the first one signs', async t => {
  const dir = tempDir(t)
  const current = await generateKeyPair('EdDSA', { extractable: true })
  const next = await generateKeyPair('EdDSA', { extractable: true })
  const { exportPKCS8, exportSPKI, calculateJwkThumbprint } = await import('jose')
  const kidOf = async (k: CryptoKey): Promise<string> => calculateJwkThumbprint(await exportJWK(k))
  const [currentKid, nextKid] = [await kidOf(current.publicKey), await kidOf(next.publicKey)]

  const files: Array<[string, string]> = [
    ['JWKS, both private', JSON.stringify({ keys: [await exportJWK(current.privateKey), await exportJWK(next.privateKey)] })],
    ['JWKS, next public only', JSON.stringify({ keys: [await exportJWK(current.privateKey), await exportJWK(next.publicKey)] })],
    ['two PEM blocks', `${await exportPKCS8(current.privateKey)}\n${await exportSPKI(next.publicKey)}`]
  ]
  for (const [name, text] of files) {
    await t.test(name, async t => {
      const keyFile = join(dir, `${name.replace(/\W+/g, '-')}.key`)
      writeFileSync(keyFile, text)
      const env = await startStack(t, { config: withAssertion({}, { keyFile }) })
      const published = await jwks(env)
      t.same(published.keys.map(k => k.kid), [currentKid, nextKid], 'both published, current first')
      for (const k of published.keys) {
        t.same(Object.keys(k).sort(), ['alg', 'crv', 'kid', 'kty', 'use', 'x'], 'public members only')
        t.equal(k.kid, await calculateJwkThumbprint(k), 'kid = RFC 7638 thumbprint')
      }
      const pat = await env.mintPat()
      t.equal((await env.get('/api/scans', pat.token)).statusCode, 200)
      const token = assertionOf(lastUpstreamHeaders(env))
      t.equal(decodeProtectedHeader(token).kid, currentKid, 'signed with the current key')
      await jwtVerify(token, await importJWK(published.keys[0] ?? {}, 'EdDSA'))
      await t.rejects(jwtVerify(token, await importJWK(published.keys[1] ?? {}, 'EdDSA')), { code: 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' }, 'not with the next one')
      const logged = env.logs.records().find(r => r.msg === 'assertion signing key loaded')
      t.same(logged?.published, [currentKid, nextKid])
    })
  }
})

t.test('without a key file a key is generated at start, logged once with its kid and never its private part', async t => {
  const env = await startStack(t, { config: withAssertion() })
  const [key] = (await jwks(env)).keys
  const lines = env.logs.lines.filter(l => l.includes('assertion signing key generated'))
  t.equal(lines.length, 1)
  t.match(JSON.parse(lines[0] ?? '{}'), { kid: key?.kid })
  t.notOk(env.logs.lines.some(l => /"d"\s*:/.test(l) || l.includes('PRIVATE KEY')), 'no private key material in any line')
  const res = await request(env.opsPort, '/.well-known/jwks.json')
  t.match(res.headers['content-type'], /^application\/jwk-set\+json/)
  t.notOk('d' in (key ?? {}), 'the JWKS holds no private part')
})

t.test('assertions off: no header, no JWKS', async t => {
  const env = await startStack(t)
  const pat = await env.mintPat()
  t.equal((await env.get('/api/scans', pat.token)).statusCode, 200)
  t.equal(lastUpstreamHeaders(env)['x-hg-assertion'], undefined)
  t.equal((await request(env.opsPort, '/.well-known/jwks.json')).statusCode, 404)
  t.equal(env.sidecar.assertion, null)
})

t.test('self-service requests are answered by the sidecar and sign nothing', async t => {
  const env = await startStack(t, { config: withAssertion() })
  const pat = await env.mintPat()
  t.equal((await env.get('/api/personal-access-tokens', pat.token)).statusCode, 200)
  t.equal(env.sidecar.assertion?.size, 0)
})

t.test('WebSocket upgrades carry the assertion too', async t => {
  const server = http.createServer()
  const wss = new WebSocketServer({ server })
  const upgrades: IncomingHttpHeaders[] = []
  wss.on('connection', (socket, req) => {
    upgrades.push(req.headers)
    socket.close()
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>(resolve => { wss.close(); server.closeAllConnections(); server.close(() => resolve()) }))
  const upstreamUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const env = await startStack(t, { config: withAssertion({ routes: [{ prefix: '/', upstream: upstreamUrl }] }) })
  const verify = createVerifier({ jwksUrl: jwksUrl(env), audience: AUDIENCE })
  const pat = await env.mintPat({ role: 'viewer' })
  await new Promise<void>((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${env.port}/live`, { headers: { 'x-api-key': pat.token, 'x-hg-assertion': 'forged' } })
    ws.on('close', () => resolve())
    ws.on('error', reject)
  })
  const h = upgrades[0] ?? {}
  t.same(identity(await verify({ 'x-hg-assertion': assertionOf(h) })), claimsFromHeaders(h))
})

t.test('the README shows the example verifiers as they are tested here', async t => {
  const read = (rel: string): string => readFileSync(fileURLToPath(new URL(rel, import.meta.url)), 'utf8')
  const readme = read('../../README.md')
  const blocks = (lang: string): string[] => [...readme.matchAll(new RegExp('```' + lang + '\\n([\\s\\S]*?)```', 'g'))].map(m => m[1] ?? '')
  t.ok(blocks('js').includes(read('../../examples/assertion/verify.mjs')), 'Node: examples/assertion/verify.mjs verbatim')
  const py = read('../../examples/assertion/verify.py').split('\n\nif __name__')[0] ?? ''
  t.ok(blocks('python').includes(py + '\n'), 'Python: verify.py up to its command-line part')
})
