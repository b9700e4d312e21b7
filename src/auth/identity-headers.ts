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
  requiredPermission: 'x-hg-required-permission'
} as const

/** What the auth hook decided for a request: the proxy's headers and the request log read it. */
export interface RequestAuth {
  reason: string
  kind: CredentialKind | null
  prefix: string | null
  principal: Principal | null
  decision: PolicyDecision | null
  credentialSource: CredentialSource | null
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
}

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

/** docs/DESIGN.md §2 step 2: the reserved namespace goes first, on every path. */
export function stripReserved (headers: HeaderSet): void {
  for (const name in headers) {
    if (name.length > 5 && name.charCodeAt(0) === 120 /* x */ && name.startsWith('x-hg-')) delete headers[name]
  }
}

/**
 * The header set the upstream receives (docs/DESIGN.md §2 steps 2 and 8), for HTTP
 * and WebSocket alike. `headers` is the proxy's own copy of the inbound set
 * (never the request's), changed in place and returned.
 */
export function upstreamHeaders (headers: HeaderSet, ctx: UpstreamContext): HeaderSet {
  stripReserved(headers)
  const auth = ctx.auth
  if (auth === null || auth.credentialSource === null) {
    // Public routes: a credential the client sent anyway is not the upstream's business either.
    delete headers['x-api-key']
    const bearer = headers.authorization
    if (typeof bearer === 'string' && /^bearer\s+hg_/i.test(bearer)) delete headers.authorization
  } else if (ctx.stripCredentialHeader && auth.reason !== 'passthrough') {
    delete headers[auth.credentialSource]
  }
  if (auth?.principal != null) setIdentityHeaders(headers, auth.principal)
  headers['x-forwarded-for'] = ctx.forwardedFor
  headers['x-forwarded-proto'] = ctx.proto
  if (ctx.host !== undefined) headers['x-forwarded-host'] = ctx.host
  else delete headers['x-forwarded-host']
  headers['x-request-id'] = ctx.requestId
  return headers
}
