import { createPrivateKey, createPublicKey, generateKeyPairSync, type JsonWebKey as NodeJwk, type KeyObject } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { calculateJwkThumbprint, SignJWT, type JWK } from 'jose'
import { ConfigError } from '../config/load.js'
import type { Principal } from './principal.js'

/** A public key as the JWKS publishes it. */
export interface PublicJwk extends JWK {
  kty: 'OKP'
  crv: 'Ed25519'
  x: string
  /** RFC 7638 thumbprint of the key. */
  kid: string
  alg: 'EdDSA'
  use: 'sig'
}

export interface AssertionKeys {
  /** Signs every assertion: the first key of the file, or the generated one. */
  signing: { kid: string, privateKey: KeyObject }
  /** The signing key first, then every other key of the file (the next one, or the previous one while verifiers still hold its assertions). */
  published: readonly PublicJwk[]
  /** No key file: a key made at start, this process's alone. */
  generated: boolean
}

const WHERE = 'invalid config: assertion.keyFile (ASSERTION_KEY_FILE)'
const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([\s\S]*?)-----END \1-----/g

function keyError (what: string): ConfigError {
  return new ConfigError(`${WHERE}: ${what}`)
}

async function toPublicJwk (key: KeyObject): Promise<PublicJwk> {
  const pub = key.type === 'private' ? createPublicKey(key) : key
  const jwk = pub.export({ format: 'jwk' })
  if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || typeof jwk.x !== 'string') throw keyError('not an Ed25519 key')
  const base = { kty: 'OKP' as const, crv: 'Ed25519' as const, x: jwk.x }
  return { ...base, kid: await calculateJwkThumbprint(base, 'sha256'), alg: 'EdDSA', use: 'sig' }
}

function requireEd25519 (key: KeyObject, where: string): KeyObject {
  if (key.asymmetricKeyType !== 'ed25519') throw keyError(`${where} is a ${key.asymmetricKeyType ?? 'symmetric'} key; only Ed25519 (alg EdDSA) is supported`)
  return key
}

function fromPem (text: string): KeyObject[] {
  const keys: KeyObject[] = []
  for (const [, label, body] of text.matchAll(PEM_BLOCK)) {
    const where = `PEM block ${keys.length + 1} (${label ?? ''})`
    const pem = `-----BEGIN ${label ?? ''}-----\n${body ?? ''}-----END ${label ?? ''}-----\n`
    let key: KeyObject
    try {
      if (label === 'PRIVATE KEY') key = createPrivateKey(pem)
      else if (label === 'PUBLIC KEY') key = createPublicKey(pem)
      else throw keyError(`${where}: expected PRIVATE KEY (PKCS #8, unencrypted) or PUBLIC KEY (SPKI)`)
    } catch (err) {
      if (err instanceof ConfigError) throw err
      // The crypto library's reason only: its message never holds key material, the PEM text is not repeated.
      throw keyError(`${where} could not be read (${(err as { code?: string }).code ?? 'invalid'})`)
    }
    keys.push(requireEd25519(key, where))
  }
  if (keys.length === 0) throw keyError('no PEM block found')
  return keys
}

function fromJwk (value: unknown, where: string): KeyObject {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw keyError(`${where} is not a JSON object`)
  const jwk = value as Record<string, unknown>
  if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519') throw keyError(`${where}: expected kty "OKP" and crv "Ed25519"`)
  if (jwk.alg !== undefined && jwk.alg !== 'EdDSA' && jwk.alg !== 'Ed25519') throw keyError(`${where}: alg must be EdDSA when present`)
  if (jwk.use !== undefined && jwk.use !== 'sig') throw keyError(`${where}: use must be sig when present`)
  if (typeof jwk.x !== 'string') throw keyError(`${where}: x is missing`)
  if (jwk.d !== undefined && typeof jwk.d !== 'string') throw keyError(`${where}: d must be a string`)
  const key: NodeJwk = { kty: 'OKP', crv: 'Ed25519', x: jwk.x }
  if (typeof jwk.d === 'string') key.d = jwk.d
  let obj: KeyObject
  try {
    obj = key.d === undefined ? createPublicKey({ key, format: 'jwk' }) : createPrivateKey({ key, format: 'jwk' })
  } catch (err) {
    throw keyError(`${where} could not be read (${(err as { code?: string }).code ?? 'invalid'})`)
  }
  if (obj.type === 'private' && createPublicKey(obj).export({ format: 'jwk' }).x !== jwk.x) {
    throw keyError(`${where}: x is not the public key of d`)
  }
  return obj
}

function fromJson (text: string): KeyObject[] {
  let doc: unknown
  try {
    doc = JSON.parse(text)
  } catch {
    throw keyError('not valid JSON')
  }
  if (typeof doc === 'object' && doc !== null && 'keys' in doc) {
    const list = (doc as { keys: unknown }).keys
    if (!Array.isArray(list) || list.length === 0) throw keyError('"keys" must be a non-empty array')
    return list.map((k, i) => fromJwk(k, `keys[${i}]`))
  }
  return [fromJwk(doc, 'the JWK')]
}

/**
 * The signing key and the published keys. File format (docs: "Identity
 * assertion"): one or more PEM blocks (PKCS #8 PRIVATE KEY or SPKI PUBLIC
 * KEY), a single JWK, or a JWK Set `{"keys": [...]}`. The first key signs and
 * must be private; every key is published. No file: a key generated now.
 */
export async function loadAssertionKeys (file: string | null): Promise<AssertionKeys> {
  if (file === null) {
    const { privateKey } = generateKeyPairSync('ed25519')
    const jwk = await toPublicJwk(privateKey)
    return { signing: { kid: jwk.kid, privateKey }, published: [jwk], generated: true }
  }
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    throw keyError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`)
  }
  const trimmed = text.trim()
  const keys = trimmed.startsWith('{')
    ? fromJson(trimmed)
    : trimmed.includes('-----BEGIN ')
      ? fromPem(trimmed)
      : (() => { throw keyError('neither PEM nor JSON (a JWK or {"keys": [...]})') })()
  const first = keys[0]
  if (first === undefined || first.type !== 'private') throw keyError('the first key signs and must be a private key')
  const published: PublicJwk[] = []
  for (const key of keys) {
    const jwk = await toPublicJwk(key)
    if (published.some(p => p.kid === jwk.kid)) throw keyError(`key ${jwk.kid} appears twice`)
    published.push(jwk)
  }
  return { signing: { kid: published[0]?.kid ?? '', privateKey: first }, published, generated: false }
}

/** The claims of an assertion (docs/DESIGN.md §9), equal to the identity headers of the same request. */
export interface AssertionClaims {
  iss: string
  aud: string
  /** User id for a PAT, key id for an API key. */
  sub: string
  org: string
  role: string
  /** Sorted. */
  permissions: string[]
  cred_type: Principal['type']
  cred_id: string
  iat: number
  exp: number
}

export interface AssertionSignerOptions {
  keys: AssertionKeys
  issuer: string
  audience: string
  /** exp - iat; at most 300. */
  ttlSeconds: number
  /** Signed assertions kept for reuse, one per credential. */
  maxEntries: number
  /** Milliseconds since the epoch (tests move it). */
  now?: () => number
}

export interface AssertionSigner {
  /**
   * The assertion for this principal: the one signed earlier while it states
   * the same identity and more than half its lifetime remains (returned at
   * once), else a promise of a new one.
   */
  assertionFor(p: Principal): string | Promise<string>
  /** `{ keys }` for GET /.well-known/jwks.json. */
  readonly jwks: { keys: readonly PublicJwk[] }
  readonly size: number
}

interface Entry {
  type: Principal['type']
  userId: string | null
  orgId: string
  role: string
  permissionsHeader: string
  token: string | null
  pending: Promise<string> | null
  /** Reused until then: exp minus half the lifetime, in ms. */
  reuseUntil: number
}

/** Every claim but iat and exp: what an entry may be reused for. The cache key (credential id) is the last one. */
function sameIdentity (e: Entry, p: Principal): boolean {
  return e.type === p.type && e.userId === p.userId && e.orgId === p.orgId && e.role === p.role && e.permissionsHeader === p.permissionsHeader
}

export function claimsOf (p: Principal, issuer: string, audience: string, iat: number, ttlSeconds: number): AssertionClaims {
  return {
    iss: issuer,
    aud: audience,
    sub: p.userId ?? p.credentialId,
    org: p.orgId,
    role: p.role,
    permissions: [...p.permissions],
    cred_type: p.type,
    cred_id: p.credentialId,
    iat,
    exp: iat + ttlSeconds
  }
}

/**
 * Signs assertions with jose (compact JWS, EdDSA) and keeps each credential's
 * last one while it can be reused. A role or permission change, read fresh on
 * every request, makes the principal differ from the entry: it is re-signed.
 */
export function createAssertionSigner (opts: AssertionSignerOptions): AssertionSigner {
  const { issuer, audience, ttlSeconds, maxEntries } = opts
  const { kid, privateKey } = opts.keys.signing
  const now = opts.now ?? Date.now
  const header = { alg: 'EdDSA', kid, typ: 'JWT' } as const
  const cache = new Map<string, Entry>()
  const jwks = { keys: opts.keys.published }

  function sign (p: Principal, at: number): Promise<string> {
    const iat = Math.floor(at / 1000)
    const claims = claimsOf(p, issuer, audience, iat, ttlSeconds)
    const entry: Entry = {
      type: p.type,
      userId: p.userId,
      orgId: p.orgId,
      role: p.role,
      permissionsHeader: p.permissionsHeader,
      token: null,
      pending: null,
      reuseUntil: claims.exp * 1000 - ttlSeconds * 500
    }
    const id = p.credentialId
    const pending = new SignJWT({ ...claims }).setProtectedHeader(header).sign(privateKey).then(token => {
      entry.token = token
      entry.pending = null
      return token
    }, (err: unknown) => {
      if (cache.get(id) === entry) cache.delete(id)
      throw err
    })
    entry.pending = pending
    // Re-inserted at the end: the map's order is the order of signing, oldest first out.
    cache.delete(id)
    cache.set(id, entry)
    if (cache.size > maxEntries) {
      const oldest = cache.keys().next()
      if (oldest.done !== true) cache.delete(oldest.value)
    }
    return pending
  }

  return {
    jwks,
    get size () { return cache.size },
    assertionFor (p) {
      const at = now()
      const e = cache.get(p.credentialId)
      if (e !== undefined && sameIdentity(e, p)) {
        if (e.token !== null && at < e.reuseUntil) return e.token
        // Requests of one identity arriving together share one signature.
        if (e.pending !== null) return e.pending
      }
      return sign(p, at)
    }
  }
}
