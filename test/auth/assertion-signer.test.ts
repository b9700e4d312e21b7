import { generateKeyPairSync } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import { decodeJwt, decodeProtectedHeader, exportJWK, exportPKCS8, generateKeyPair, importJWK, jwtVerify } from 'jose'
import t from 'tap'
import { claimsOf, createAssertionSigner, loadAssertionKeys, type AssertionKeys } from '../../src/auth/assertion.js'
import { createRoleTable, type Principal } from '../../src/auth/principal.js'
import { ConfigError, loadConfig } from '../../src/config/load.js'

const roles = createRoleTable(loadConfig({ env: {} }).roles)

function principal (over: Partial<Principal> & { subset?: string[] | null } = {}): Principal {
  const role = over.role ?? 'member'
  const eff = roles.effective(role, over.subset ?? null)
  return {
    type: 'pat',
    credentialId: '7d1e6a52-0000-4000-8000-000000000001',
    prefix: 'hg_pat_abc',
    userId: '7d1e6a52-0000-4000-8000-0000000000aa',
    orgId: '7d1e6a52-0000-4000-8000-0000000000bb',
    role,
    permissions: eff.list,
    permissionsHeader: eff.header,
    expiresAt: null,
    ...over
  }
}

async function resolve (v: string | Promise<string>): Promise<string> {
  return typeof v === 'string' ? v : await v
}

let keys: AssertionKeys
t.before(async () => { keys = await loadAssertionKeys(null) })

function signer (clock: { ms: number }, over: { ttlSeconds?: number, maxEntries?: number } = {}): ReturnType<typeof createAssertionSigner> {
  return createAssertionSigner({ keys, issuer: 'hg-auth-sidecar', audience: 'scan-api', ttlSeconds: over.ttlSeconds ?? 300, maxEntries: over.maxEntries ?? 100, now: () => clock.ms })
}

t.test('claims: the identity of the principal, sorted permissions, exp = iat + ttl; EdDSA with the key\'s kid', async t => {
  const clock = { ms: 1_700_000_000_500 }
  const s = signer(clock, { ttlSeconds: 120 })
  const token = await resolve(s.assertionFor(principal({ subset: ['scans:write', 'scans:read'] })))
  t.same(decodeProtectedHeader(token), { alg: 'EdDSA', kid: keys.signing.kid, typ: 'JWT' })
  t.same(decodeJwt(token), {
    iss: 'hg-auth-sidecar',
    aud: 'scan-api',
    sub: '7d1e6a52-0000-4000-8000-0000000000aa',
    org: '7d1e6a52-0000-4000-8000-0000000000bb',
    role: 'member',
    permissions: ['scans:read', 'scans:write'],
    cred_type: 'pat',
    cred_id: '7d1e6a52-0000-4000-8000-000000000001',
    iat: 1_700_000_000,
    exp: 1_700_000_120
  })
  const apiKey = decodeJwt(await resolve(s.assertionFor(principal({ type: 'api_key', userId: null, credentialId: 'k1' }))))
  t.equal(apiKey.sub, 'k1', 'an API key\'s sub is its id')
  t.equal(apiKey.cred_type, 'api_key')
  const pub = await importJWK(keys.published[0] ?? {}, 'EdDSA')
  await jwtVerify(token, pub, { currentDate: new Date(clock.ms), audience: 'scan-api', issuer: 'hg-auth-sidecar' })
})

t.test('reused while more than half the lifetime remains, then signed again', async t => {
  const clock = { ms: 1_700_000_000_000 }
  const s = signer(clock, { ttlSeconds: 300 })
  const p = principal()
  const first = s.assertionFor(p)
  t.type(first, Promise, 'first use signs')
  t.equal(s.assertionFor(p), first, 'requests arriving while it is signed share the one signature')
  const token = await resolve(first)
  t.equal(s.assertionFor(principal()), token, 'an equal principal (another object) gets it at once, as a string')
  clock.ms += 149_999
  t.equal(s.assertionFor(p), token, 'just over half its lifetime left')
  clock.ms += 1
  const second = await resolve(s.assertionFor(p))
  t.not(second, token, 'half its lifetime left: signed again')
  t.equal(decodeJwt(second).iat, 1_700_000_150)
  t.equal(s.size, 1, 'one entry per credential')
})

t.test('never reused across a change of role, permissions, org or user', async t => {
  const clock = { ms: 1_700_000_000_000 }
  const s = signer(clock)
  const base = principal({ role: 'admin' })
  const token = await resolve(s.assertionFor(base))
  const changes: Array<[string, Principal]> = [
    ['role', principal({ role: 'viewer' })],
    ['permissions', principal({ role: 'admin', subset: ['scans:read'] })],
    ['org', principal({ role: 'admin', orgId: 'another-org' })],
    ['user', principal({ role: 'admin', userId: 'another-user' })],
    ['credential type', principal({ role: 'admin', type: 'api_key' })]
  ]
  for (const [what, p] of changes) {
    const other = await resolve(s.assertionFor(p))
    t.not(other, token, what)
    t.same(decodeJwt(other), { ...claimsOf(p, 'hg-auth-sidecar', 'scan-api', 1_700_000_000, 300) }, `${what}: the new identity`)
  }
})

t.test('the cache is bounded: the oldest signed entry goes first', async t => {
  const clock = { ms: 1_700_000_000_000 }
  const s = signer(clock, { maxEntries: 2 })
  await resolve(s.assertionFor(principal({ credentialId: 'a' })))
  await resolve(s.assertionFor(principal({ credentialId: 'b' })))
  await resolve(s.assertionFor(principal({ credentialId: 'c' })))
  t.equal(s.size, 2)
  t.type(s.assertionFor(principal({ credentialId: 'c' })), 'string', 'c kept')
  t.type(s.assertionFor(principal({ credentialId: 'a' })), Promise, 'a was evicted: signed again')
})

t.test('property: every assertion handed out states the principal asked for and has more than half its lifetime left', async t => {
  const roleNames = ['viewer', 'member', 'admin', 'owner']
  const step = fc.record({
    cred: fc.constantFrom('c1', 'c2', 'c3'),
    role: fc.constantFrom(...roleNames),
    subset: fc.option(fc.subarray(['scans:read', 'scans:write', 'reports:read', 'tokens:manage']), { nil: null }),
    org: fc.constantFrom('o1', 'o2'),
    advanceMs: fc.integer({ min: 0, max: 200_000 })
  })
  await fc.assert(fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 30 }), fc.integer({ min: 10, max: 300 }), fc.integer({ min: 1, max: 4 }), async (steps, ttl, maxEntries) => {
    const clock = { ms: 1_700_000_000_000 }
    const s = signer(clock, { ttlSeconds: ttl, maxEntries })
    for (const st of steps) {
      clock.ms += st.advanceMs
      const p = principal({ credentialId: st.cred, role: st.role, subset: st.subset, orgId: st.org })
      const claims = decodeJwt(await resolve(s.assertionFor(p)))
      const { iat, exp, ...rest } = claims
      const { iat: _i, exp: _e, ...want } = claimsOf(p, 'hg-auth-sidecar', 'scan-api', 0, ttl)
      if (JSON.stringify(rest) !== JSON.stringify(want)) return false
      if (exp !== (iat ?? 0) + ttl || (exp ?? 0) * 1000 - clock.ms <= (ttl * 1000) / 2) return false
      if (s.size > maxEntries) return false
    }
    return true
  }), { numRuns: 60 })
  t.pass('held')
})

t.test('key files: PEM and JWK(S), first key signs, every key published', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'hg-assertion-keys-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = (name: string, text: string): string => {
    const f = join(dir, name)
    writeFileSync(f, text)
    return f
  }
  const a = await generateKeyPair('EdDSA', { extractable: true })
  const b = await generateKeyPair('EdDSA', { extractable: true })
  const aJwk = await exportJWK(a.privateKey)
  const bJwk = await exportJWK(b.privateKey)

  const single = await loadAssertionKeys(file('single.jwk', JSON.stringify({ ...aJwk, kid: 'ignored', alg: 'EdDSA', use: 'sig' })))
  t.equal(single.generated, false)
  t.equal(single.published.length, 1)
  t.not(single.signing.kid, 'ignored', 'kid is always the thumbprint')
  const pem = await loadAssertionKeys(file('one.pem', await exportPKCS8(a.privateKey)))
  t.equal(pem.signing.kid, single.signing.kid, 'the same key read from PEM has the same kid')
  const both = await loadAssertionKeys(file('both.json', JSON.stringify({ keys: [bJwk, aJwk] })))
  t.same(both.published.map(k => k.kid), [both.signing.kid, single.signing.kid], 'order of the file')
  const crlf = await loadAssertionKeys(file('crlf.pem', (await exportPKCS8(a.privateKey)).replace(/\n/g, '\r\n')))
  t.equal(crlf.signing.kid, single.signing.kid, 'CRLF line ends')

  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' })
  const bad: Array<[string, string, RegExp]> = [
    ['garbage', 'hello', /neither PEM nor JSON/],
    ['bad.json', '{"keys": [', /not valid JSON/],
    ['empty-keys.json', '{"keys": []}', /non-empty array/],
    ['rsa.pem', rsa, /rsa key; only Ed25519/],
    ['ec.json', JSON.stringify(ec), /expected kty "OKP" and crv "Ed25519"/],
    ['public-first.json', JSON.stringify({ keys: [await exportJWK(a.publicKey), bJwk] }), /first key signs and must be a private key/],
    ['mismatch.json', JSON.stringify({ ...aJwk, x: bJwk.x }), /x is not the public key of d/],
    ['twice.json', JSON.stringify({ keys: [aJwk, await exportJWK(a.publicKey)] }), /appears twice/],
    ['encrypted.pem', '-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n', /expected PRIVATE KEY \(PKCS #8, unencrypted\)/],
    ['broken.pem', '-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n', /PEM block 1 \(PRIVATE KEY\) could not be read/],
    ['alg.json', JSON.stringify({ ...aJwk, alg: 'RS256' }), /alg must be EdDSA/]
  ]
  for (const [name, text, re] of bad) {
    const err = await loadAssertionKeys(file(name, text)).then(() => null, (e: unknown) => e)
    t.ok(err instanceof ConfigError, `${name}: a ConfigError`)
    const message = (err as Error | null)?.message ?? ''
    t.match(message, /^invalid config: assertion\.keyFile \(ASSERTION_KEY_FILE\): /, `${name}: names the key`)
    t.match(message, re, name)
    for (const secret of [aJwk.d, bJwk.d, 'MIIB', 'not base64']) t.notMatch(message, secret ?? '', `${name}: no key material in the message`)
  }
  await t.rejects(loadAssertionKeys(join(dir, 'missing.json')), /cannot read .*missing\.json: ENOENT/)
})
