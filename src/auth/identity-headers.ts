import type { CredentialKind } from '../credentials/format.js'
import type { CredentialSource } from './credential-header.js'
import type { PolicyDecision } from './policy.js'
import type { Principal } from './principal.js'

export const IdentityHeader = {
  authType: 'x-hg-auth-type',
  userId: 'x-hg-user-id',
  orgId: 'x-hg-org-id',
  role: 'x-hg-role',
  permissions: 'x-hg-permissions',
  credentialId: 'x-hg-credential-id',
  credentialPrefix: 'x-hg-credential-prefix',
  tokenExpires: 'x-hg-token-expires',
  requiredPermission: 'x-hg-required-permission',
  assertion: 'x-hg-assertion'
} as const

/** What the auth hook decided for a request: the proxy's headers and the request log read it. */
export interface RequestAuth {
  reason: string
  kind: CredentialKind | null
  prefix: string | null
  principal: Principal | null
  decision: PolicyDecision | null
  credentialSource: CredentialSource | null
  /** The signed identity assertion for the upstream (docs/DESIGN.md §9), when enabled. */
  assertion?: string
}

export type HeaderSet = Record<string, string | string[] | undefined>

/** Per request, what the upstream header set is built from besides the inbound headers. */
export interface UpstreamContext {
  auth: RequestAuth | null
  /** The rebuilt X-Forwarded-For chain. */
  forwardedFor: string
  proto: string
  host: string | undefined
  requestId: string
  /** Remove the header the credential came in (config auth.stripCredentialHeader). */
  stripCredentialHeader: boolean
  /** Headers of the stripped lists that this deployment's upstream needs (config upstream.allowHeaders). */
  allow?: ReadonlySet<string>
}

/**
 * docs/DESIGN.md §2.1: headers that would make the upstream see another client,
 * target or method than the policy judged (X-Original-URL re-routes IIS and
 * Symfony, the method overrides re-route most frameworks).
 */
export const RETARGETING_HEADERS = [
  'forwarded', 'x-real-ip', 'x-client-ip', 'x-original-url', 'x-rewrite-url', 'x-forwarded-prefix', 'x-forwarded-port',
  'x-forwarded-server', 'x-http-method-override', 'x-http-method', 'x-method-override'
] as const

/**
 * Hop-by-hop headers (RFC 9110 7.6.1) and Expect: they describe the client's
 * connection, not the request. undici refuses some outright (Keep-Alive,
 * Upgrade, Expect: a 502 without contacting the upstream); Node has already
 * answered a 100-continue by the time the proxy streams the body.
 */
export const HOP_BY_HOP_HEADERS = [
  'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'upgrade', 'expect'
] as const

const STRIPPED: ReadonlySet<string> = new Set([...RETARGETING_HEADERS, ...HOP_BY_HOP_HEADERS])

/** The contract's identity headers (docs/DESIGN.md §2 step 8), set on a header object already stripped of x-hg-*. */
export function setIdentityHeaders (headers: HeaderSet, p: Principal): void {
  headers[IdentityHeader.authType] = p.type
  if (p.userId !== null) headers[IdentityHeader.userId] = p.userId
  headers[IdentityHeader.orgId] = p.orgId
  headers[IdentityHeader.role] = p.role
  headers[IdentityHeader.permissions] = p.permissionsHeader
  headers[IdentityHeader.credentialId] = p.credentialId
  headers[IdentityHeader.credentialPrefix] = p.prefix
}

/** The reserved namespace after folding `_` to `-`, as CGI/WSGI servers do (`x_hg_role`, the bare `x-hg-`). */
export function isReserved (name: string): boolean {
  if (name.length < 5 || (name.charCodeAt(0) | 0x20) !== 120 /* x */) return false
  return name.slice(0, 5).toLowerCase().replaceAll('_', '-') === 'x-hg-'
}

const CREDENTIAL_SHAPED = /hg_(pat|key)_/i

/** Whether a header value holds something credential-shaped (`hg_pat_…`, `hg_key_…`, any case). */
function carriesCredential (value: string | string[]): boolean {
  if (typeof value !== 'string') return value.some(carriesCredential)
  return value.includes('_') && CREDENTIAL_SHAPED.test(value)
}

/**
 * docs/DESIGN.md §2 step 2 and §2.1: the reserved namespace, the re-targeting
 * and hop-by-hop headers, and any credential-shaped value but in the header
 * that authenticated (`keep`) go first, on every path.
 */
export function stripInbound (headers: HeaderSet, keep: string | null, allow?: ReadonlySet<string>): void {
  for (const name in headers) {
    if (isReserved(name) || (STRIPPED.has(name) && allow?.has(name) !== true)) {
      delete headers[name]
      continue
    }
    if (name === keep) continue
    const value = headers[name]
    if (value !== undefined && carriesCredential(value)) delete headers[name]
  }
}

/**
 * The header set the upstream receives (docs/DESIGN.md §2 steps 2 and 8), for HTTP
 * and WebSocket alike. `headers` is the proxy's own copy of the inbound set
 * (never the request's), changed in place and returned.
 */
export function upstreamHeaders (headers: HeaderSet, ctx: UpstreamContext): HeaderSet {
  const auth = ctx.auth
  const source = auth?.credentialSource ?? null
  // The header that authenticated stays only when configured to (or passed through);
  // on public routes no credential is the upstream's business.
  const keep = source !== null && (!ctx.stripCredentialHeader || auth?.reason === 'passthrough') ? source : null
  stripInbound(headers, keep, ctx.allow)
  if (source !== null && keep === null) delete headers[source]
  if (source === null) delete headers['x-api-key']
  if (auth?.principal != null) setIdentityHeaders(headers, auth.principal)
  if (auth?.assertion !== undefined) headers[IdentityHeader.assertion] = auth.assertion
  headers['x-forwarded-for'] = ctx.forwardedFor
  headers['x-forwarded-proto'] = ctx.proto
  if (ctx.host !== undefined) headers['x-forwarded-host'] = ctx.host
  else delete headers['x-forwarded-host']
  headers['x-request-id'] = ctx.requestId
  return headers
}
