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

/** The contract's identity headers (DESIGN.md 2.8), set on a header object already stripped of x-hg-*. */
export function setIdentityHeaders (headers: Record<string, string | string[] | undefined>, p: Principal): void {
  headers[IdentityHeader.authType] = p.type
  if (p.userId !== null) headers[IdentityHeader.userId] = p.userId
  headers[IdentityHeader.orgId] = p.orgId
  headers[IdentityHeader.role] = p.role
  headers[IdentityHeader.permissions] = p.permissionsHeader
  headers[IdentityHeader.credentialId] = p.credentialId
  headers[IdentityHeader.credentialPrefix] = p.prefix
}

/** DESIGN.md 9: the signed assertion of the same principal, when one was made. */
export function setAssertionHeader (headers: Record<string, string | string[] | undefined>, assertion: string | undefined): void {
  if (assertion !== undefined) headers[IdentityHeader.assertion] = assertion
}

const SANE_REQUEST_ID = /^[A-Za-z0-9._:/+=-]{1,128}$/

/** The inbound X-Request-Id when syntactically sane, else null (a new one is generated). */
export function saneRequestId (value: string | string[] | undefined): string | null {
  return typeof value === 'string' && SANE_REQUEST_ID.test(value) ? value : null
}
