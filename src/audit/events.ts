import type { CredentialRef } from '../auth/outcome.js'
import { maskCredentials } from '../mask.js'

/** docs/DESIGN.md §10: what happened to a credential. */
export const EventKind = {
  created: 'created',
  revoked: 'revoked',
  usedAfterRevoke: 'used_after_revoke',
  usedAfterExpiry: 'used_after_expiry',
  usedWhileSuspended: 'used_while_suspended',
  /** A PAT presented after its owner's membership in the token's org was removed. */
  usedAfterRemoval: 'used_after_removal',
  leakReported: 'leak_reported'
} as const
export type EventKind = typeof EventKind[keyof typeof EventKind]
export const EVENT_KINDS: readonly EventKind[] = Object.values(EventKind)

/** Who did it. Use-events have no actor: the presenter is known only by its address. */
export const ActorType = {
  selfService: 'self_service',
  adminApi: 'admin_api',
  cli: 'cli',
  leakReport: 'leak_report',
  /** The sidecar itself (the demo token, tests). */
  system: 'system'
} as const
export type ActorType = typeof ActorType[keyof typeof ActorType]

export interface Actor {
  type: ActorType
  /** Self-service: the credential that authenticated the call; admin API and leak reports: X-Actor-Id; CLI: the OS user. */
  id?: string | null
  clientIp?: string | null
  requestId?: string | null
  /** Extra facts about the actor (self-service: the caller's user id). */
  detail?: Record<string, unknown>
}

export const SYSTEM_ACTOR: Actor = { type: ActorType.system }

/** The credential an event is about; never its secret or hash. */
export type { CredentialRef }

export interface NewEvent {
  at: Date
  kind: EventKind
  credential: CredentialRef
  actor: Actor | null
  clientIp: string | null
  requestId: string | null
  detail: Record<string, unknown> | null
}

/** A stored event as the admin API and the CLI show it. */
export interface CredentialEvent {
  id: string
  at: string
  kind: string
  credentialType: string
  credentialId: string | null
  prefix: string | null
  orgId: string | null
  userId: string | null
  actorType: string | null
  actorId: string | null
  clientIp: string | null
  requestId: string | null
  detail: Record<string, unknown> | null
}

export interface EventFilter {
  credentialId?: string
  orgId?: string
  userId?: string
  kind?: EventKind
  since?: Date
  /** Keyset paging: events older than this event (by at, then id). */
  before?: string
  limit: number
}

export const DEFAULT_EVENT_LIMIT = 100
export const MAX_EVENT_LIMIT = 1000

/**
 * Free text stored in an event (a token name, a reported URL) with anything
 * credential-shaped cut to its prefix, bounded in length: a user may paste a
 * secret into a name, a leak report's URL may carry the token itself.
 */
export function safeText (text: string, max = 2048): string {
  return maskCredentials(text.length > max ? text.slice(0, max) : text)
}

export function eventFrom (kind: EventKind, credential: CredentialRef, actor: Actor | null, detail: Record<string, unknown> | null = null, at = new Date()): NewEvent {
  const merged = actor?.detail === undefined ? detail : { ...actor.detail, ...detail }
  return {
    at,
    kind,
    credential,
    actor,
    clientIp: actor?.clientIp ?? null,
    requestId: actor?.requestId ?? null,
    detail: merged
  }
}

// C0/C1 controls, format characters (bidi overrides and isolates among them) and
// the line/paragraph separators: what could rewrite a terminal line or reorder it.
const UNSAFE = /[\p{Cc}\p{Cf}\u2028\u2029]/gu

function escapeChar (c: string): string {
  return '\\u' + (c.codePointAt(0) ?? 0).toString(16).padStart(4, '0')
}

/** Stored text for a terminal: every control or format character as a visible \uXXXX. */
export function escapeText (text: string): string {
  return text.replace(UNSAFE, escapeChar)
}

/** JSON whose strings carry no raw control or format character (\uXXXX parses back to the same value). */
export function safeJson (value: unknown): string {
  return JSON.stringify(value).replace(UNSAFE, escapeChar)
}
