import {
  HG_ERR_AUTH_EXPIRED, HG_ERR_AUTH_FORBIDDEN, HG_ERR_AUTH_INVALID,
  HG_ERR_AUTH_RATE_LIMITED, HG_ERR_CLIENT_GONE, HG_ERR_REQUEST_PATH, HG_ERR_STORE_UNAVAILABLE, type ErrorDef
} from '../errors.js'
import type { CredentialKind } from '../credentials/format.js'
import type { Principal } from './principal.js'

/** Why a request was decided the way it was: the metrics' `reason` label and the log's `outcome`. */
export const Reason = {
  ok: 'ok',
  public: 'public',
  /** Step 1: a path the upstream could read differently from the policy. */
  badRequest: 'bad_request',
  missing: 'missing',
  malformed: 'malformed',
  unknown: 'unknown',
  badSecret: 'bad_secret',
  revoked: 'revoked',
  expired: 'expired',
  suspended: 'suspended',
  notMember: 'not_member',
  forbidden: 'forbidden',
  rateLimited: 'rate_limited',
  unavailable: 'unavailable',
  rejected: 'rejected',
  passthrough: 'passthrough',
  /** The client closed its connection while its credential waited for bcrypt: nothing was decided. */
  clientGone: 'client_gone'
} as const
export type Reason = typeof Reason[keyof typeof Reason]

/** A credential whose secret verified, by id: what the audit trail records of a refused use. */
export interface CredentialRef {
  type: CredentialKind
  id: string
  prefix: string
  orgId: string
  /** The owner (PAT); null for org-owned API keys. */
  userId: string | null
}

export type AuthResult =
  | { ok: true, principal: Principal }
  /** `credential`: set when the secret verified but the credential's state refused it (revoked, expired, suspended, not a member). */
  | { ok: false, reason: Reason, error: ErrorDef, credential?: CredentialRef }

export const REASON_ERROR: Record<Exclude<Reason, 'ok' | 'public' | 'passthrough'>, ErrorDef> = {
  bad_request: HG_ERR_REQUEST_PATH,
  missing: HG_ERR_AUTH_INVALID,
  malformed: HG_ERR_AUTH_INVALID,
  unknown: HG_ERR_AUTH_INVALID,
  bad_secret: HG_ERR_AUTH_INVALID,
  revoked: HG_ERR_AUTH_INVALID,
  suspended: HG_ERR_AUTH_INVALID,
  not_member: HG_ERR_AUTH_INVALID,
  rejected: HG_ERR_AUTH_INVALID,
  expired: HG_ERR_AUTH_EXPIRED,
  forbidden: HG_ERR_AUTH_FORBIDDEN,
  rate_limited: HG_ERR_AUTH_RATE_LIMITED,
  unavailable: HG_ERR_STORE_UNAVAILABLE,
  client_gone: HG_ERR_CLIENT_GONE
}

export function fail (reason: Exclude<Reason, 'ok' | 'public' | 'passthrough'>, error?: ErrorDef): AuthResult {
  return { ok: false, reason, error: error ?? REASON_ERROR[reason] }
}

/** A refusal of a credential whose secret verified: the audit trail records it (audit/use-events.ts). */
export function refuseKnown (reason: 'revoked' | 'expired' | 'suspended' | 'not_member', credential: CredentialRef): AuthResult {
  return { ok: false, reason, error: REASON_ERROR[reason], credential }
}
