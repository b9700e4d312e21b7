import { EventKind, eventFrom, safeText, SYSTEM_ACTOR, type Actor, type CredentialRef } from '../audit/events.js'
import { createRoleTable, type RoleTable } from '../auth/principal.js'
import type { Config } from '../config/schema.js'
import { hgError, HG_ERR_MGMT_INVALID, HG_ERR_MGMT_NAME_CHARS, HG_ERR_MGMT_NOT_FOUND } from '../errors.js'
import { insertEvent } from '../store/events.js'
import type { Db } from '../store/postgres.js'
import type { PrefixCache } from '../store/prefix-cache.js'
import * as q from '../store/queries.js'
import { generateCredential, hashPat, sha256 } from '../credentials/mint.js'

export interface ExpiryInput {
  expiresAt?: string | Date | null
  expiresInDays?: number
  /** A duration such as 30d, 12h, 2w, 1y (the CLI's --expires-in). */
  expiresIn?: string
  noExpiry?: boolean
}

export interface CreatePatInput extends ExpiryInput {
  userId: string
  orgId: string
  name: string
  permissions?: string[] | null
}

/** The CLI's and the admin API's JSON object (docs/DESIGN.md §5). */
export interface CreatedCredential {
  id: string
  token: string
  prefix: string
  name: string
  expiresAt: string | null
  permissions: string[] | null
  warnings: string[]
}

export interface PatView {
  id: string
  name: string
  prefix: string
  userId: string
  orgId: string
  permissions: string[] | null
  createdAt: string
  expiresAt: string | null
  lastUsedAt: string | null
  revokedAt: string | null
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const DAY_MS = 86_400_000

function invalid (message: string): Error {
  return hgError(HG_ERR_MGMT_INVALID, message)
}

export function requireUuid (value: string, what: string): string {
  if (!UUID.test(value)) throw invalid(`${what} must be a UUID`)
  return value.toLowerCase()
}

const UNIT_MS: Record<string, number> = { m: 60_000, h: 3_600_000, d: DAY_MS, w: 7 * DAY_MS, y: 365 * DAY_MS }

export function parseDuration (text: string): number {
  const m = /^(\d{1,6})([mhdwy])$/.exec(text.trim())
  if (m === null) throw invalid(`expires-in must look like 30d, 12h, 2w or 1y (got ${JSON.stringify(text.slice(0, 20))})`)
  return Number(m[1]) * (UNIT_MS[m[2] as string] as number)
}

/** Applies the expiry policy (config tokens.*); returns the expiry and any warning. */
export function resolveExpiry (input: ExpiryInput, policy: Config['tokens'], now = Date.now()): { expiresAt: Date | null, warnings: string[] } {
  const given = [input.expiresAt != null, input.expiresInDays !== undefined, input.expiresIn !== undefined, input.noExpiry === true].filter(Boolean).length
  if (given > 1) throw invalid('give at most one of expires-at, expires-in, expires-in-days and no-expiry')
  const max = policy.maxLifetimeDays * DAY_MS
  if (input.noExpiry === true) {
    if (!policy.allowNoExpiry) throw invalid('credentials without expiry are not allowed here (tokens.allowNoExpiry is false)')
    return { expiresAt: null, warnings: ['This credential never expires; prefer an expiry and rotate it.'] }
  }
  let at: number
  if (input.expiresAt != null) {
    at = input.expiresAt instanceof Date ? input.expiresAt.getTime() : Date.parse(input.expiresAt)
    if (Number.isNaN(at)) throw invalid('expires-at must be an ISO 8601 date-time')
  } else if (input.expiresInDays !== undefined) {
    if (!Number.isInteger(input.expiresInDays) || input.expiresInDays < 1) throw invalid('expires-in-days must be a whole number of at least 1')
    at = now + input.expiresInDays * DAY_MS
  } else if (input.expiresIn !== undefined) {
    at = now + parseDuration(input.expiresIn)
  } else {
    at = now + policy.defaultLifetimeDays * DAY_MS
  }
  if (at <= now) throw invalid('the expiry is in the past')
  if (at > now + max + 60_000) throw invalid(`the expiry is beyond the maximum lifetime of ${policy.maxLifetimeDays} days`)
  return { expiresAt: new Date(at), warnings: [] }
}

/**
 * C0/C1 controls (ESC, NUL, newlines), format characters (the bidi overrides
 * and isolates such as U+202E, zero-width characters), lone surrogates and the
 * line/paragraph separators: what could rewrite or reorder a terminal line or
 * a page, and NUL, which PostgreSQL refuses in text (docs/DESIGN.md §2.1).
 */
const UNSAFE_NAME = /[\p{Cc}\p{Cf}\p{Cs}\u2028\u2029]/u

export function validateName (name: string): string {
  if (UNSAFE_NAME.test(name)) throw hgError(HG_ERR_MGMT_NAME_CHARS)
  const n = name.trim()
  if (n.length === 0 || n.length > 100) throw invalid('name must be 1 to 100 characters')
  return n
}

export function normalizePermissions (perms: string[] | null | undefined, roles: RoleTable): string[] | null {
  if (perms == null) return null
  const list = [...new Set(perms.map(p => p.trim()).filter(p => p !== ''))].sort()
  const unknown = list.filter(p => !roles.known.has(p))
  if (unknown.length > 0) throw invalid(`unknown permission(s): ${unknown.join(', ')}; known: ${[...roles.known].sort().join(', ')}`)
  return list
}

function article (noun: string): string {
  return `${/^[aeiou]/i.test(noun) ? 'an' : 'a'} ${noun}`
}

function iso (d: Date | null): string | null {
  return d === null ? null : d.toISOString()
}

export function patView (r: q.PatRecord): PatView {
  return {
    id: r.id,
    name: r.name,
    prefix: r.prefix,
    userId: r.userId,
    orgId: r.orgId,
    permissions: r.permissions,
    createdAt: r.createdAt.toISOString(),
    expiresAt: iso(r.expiresAt),
    lastUsedAt: iso(r.lastUsedAt),
    revokedAt: iso(r.revokedAt)
  }
}

export interface CreateApiKeyInput extends ExpiryInput {
  orgId: string
  createdBy: string
  name: string
  role: string
  permissions?: string[] | null
}

export interface CreatedApiKey extends CreatedCredential {
  role: string
}

export interface ApiKeyView {
  id: string
  name: string
  prefix: string
  orgId: string
  createdBy: string | null
  role: string
  permissions: string[] | null
  createdAt: string
  expiresAt: string | null
  lastUsedAt: string | null
  revokedAt: string | null
}

export function apiKeyView (r: q.ApiKeyRecord): ApiKeyView {
  return {
    id: r.id,
    name: r.name,
    prefix: r.prefix,
    orgId: r.orgId,
    createdBy: r.createdBy,
    role: r.role,
    permissions: r.permissions,
    createdAt: r.createdAt.toISOString(),
    expiresAt: iso(r.expiresAt),
    lastUsedAt: iso(r.lastUsedAt),
    revokedAt: iso(r.revokedAt)
  }
}

/** The permission a creator needs for an API key (docs/DESIGN.md §1: the creator's role bounds the key's). */
export const KEY_CREATOR_PERMISSION = 'api-keys:manage'

/** Creating and revoking record a credential event (docs/DESIGN.md §10) naming `actor` (default: the sidecar itself). */
export interface CredentialService {
  createPat(input: CreatePatInput, actor?: Actor): Promise<CreatedCredential>
  listPats(userId: string, orgId?: string | null): Promise<PatView[]>
  getPat(id: string): Promise<PatView | null>
  revokePat(id: string, actor?: Actor): Promise<PatView>
  createApiKey(input: CreateApiKeyInput, actor?: Actor): Promise<CreatedApiKey>
  listApiKeys(orgId: string): Promise<ApiKeyView[]>
  getApiKey(id: string): Promise<ApiKeyView | null>
  revokeApiKey(id: string, actor?: Actor): Promise<ApiKeyView>
}

export interface CredentialServiceDeps {
  db: Db
  cache: PrefixCache | null
  config: Pick<Config, 'tokens' | 'auth' | 'roles'>
  /** The sidecar's own table; built from config.roles when absent (the CLI). */
  roles?: RoleTable
}

/** Minting, listing and revoking: shared by the CLI, the admin API and the self-service API. */
export function createCredentialService (deps: CredentialServiceDeps): CredentialService {
  const { db, config } = deps
  const roles = deps.roles ?? createRoleTable(config.roles)
  const creators = roles.order.filter(r => roles.permissionsOf(r).has(KEY_CREATOR_PERMISSION))

  /** The prefix's cached entry (it may say "unknown prefix" or list untagged rows). */
  async function invalidate (prefix: string): Promise<void> {
    await deps.cache?.invalidate(prefix)
  }

  /** Awaited: a failed write fails the call, and a retry records it (revocation is idempotent, the event kept once). */
  async function audit (kind: typeof EventKind.created | typeof EventKind.revoked, credential: CredentialRef, actor: Actor | undefined, at: Date, detail: Record<string, unknown> | null = null): Promise<void> {
    await insertEvent(db, eventFrom(kind, credential, actor ?? SYSTEM_ACTOR, detail, at))
  }

  return {
    async createPat (input, actor) {
      const userId = requireUuid(input.userId, 'user-id')
      const orgId = requireUuid(input.orgId, 'org-id')
      const name = validateName(input.name)
      const permissions = normalizePermissions(input.permissions, roles)
      const { expiresAt, warnings } = resolveExpiry(input, config.tokens)
      const m = await q.membership(db, userId, orgId)
      if (m.userStatus === null) throw invalid('no such user')
      if (m.userStatus !== 'active') throw invalid(`the user is ${m.userStatus}, not active`)
      if (m.role === null) throw invalid('the user is not a member of that org')
      if (permissions !== null) {
        const granted = roles.permissionsOf(m.role)
        const beyond = permissions.filter(p => !granted.has(p))
        if (beyond.length > 0) throw invalid(`permission(s) beyond the user's current role ${m.role}: ${beyond.join(', ')}`)
      }
      const { token, prefix, tag } = generateCredential('pat')
      const secretHash = await hashPat(token, config.auth.bcryptCost)
      const rec = await q.insertPat(db, { userId, orgId, name, prefix, secretHash, lookupTag: tag, permissions, expiresAt })
      await invalidate(prefix)
      await audit(EventKind.created, { type: 'pat', id: rec.id, prefix, orgId, userId }, actor, rec.createdAt, { name: safeText(name), expiresAt: iso(rec.expiresAt), permissions })
      return { id: rec.id, token, prefix, name, expiresAt: iso(rec.expiresAt), permissions: rec.permissions, warnings }
    },
    async listPats (userId, orgId = null) {
      const rows = await q.listPats(db, requireUuid(userId, 'user-id'), orgId === null ? null : requireUuid(orgId, 'org-id'))
      return rows.map(patView)
    },
    async getPat (id) {
      const rec = await q.getPat(db, requireUuid(id, 'id'))
      return rec === null ? null : patView(rec)
    },
    async revokePat (id, actor) {
      const rec = await q.revokePat(db, requireUuid(id, 'id'))
      if (rec === null) throw hgError(HG_ERR_MGMT_NOT_FOUND, 'no such token')
      await invalidate(rec.prefix)
      await audit(EventKind.revoked, { type: 'pat', id: rec.id, prefix: rec.prefix, orgId: rec.orgId, userId: rec.userId }, actor, rec.revokedAt ?? new Date())
      return patView(rec)
    },
    async createApiKey (input, actor) {
      const orgId = requireUuid(input.orgId, 'org-id')
      const createdBy = requireUuid(input.createdBy, 'created-by')
      const name = validateName(input.name)
      if (!roles.has(input.role)) throw invalid(`unknown role ${input.role}; known: ${roles.order.join(', ')}`)
      const permissions = normalizePermissions(input.permissions, roles)
      if (permissions !== null) {
        const granted = roles.permissionsOf(input.role)
        const beyond = permissions.filter(p => !granted.has(p))
        if (beyond.length > 0) throw invalid(`permission(s) beyond the key's role ${input.role}: ${beyond.join(', ')}`)
      }
      const { expiresAt, warnings } = resolveExpiry(input, config.tokens)
      const m = await q.membership(db, createdBy, orgId)
      if (m.userStatus === null) throw invalid('no such user (created-by)')
      if (m.userStatus !== 'active') throw invalid(`the creator is ${m.userStatus}, not active`)
      if (m.role === null) throw invalid('the creator is not a member of that org')
      if (!roles.permissionsOf(m.role).has(KEY_CREATOR_PERMISSION)) throw invalid(`only ${article(creators.join(' or '))} of the org can create API keys (roles with ${KEY_CREATOR_PERMISSION}); the creator is ${m.role}`)
      if (roles.rank(input.role) > roles.rank(m.role)) throw invalid(`${article(m.role)} cannot create a key with the higher role ${input.role}`)
      const { token, prefix, tag } = generateCredential('api_key')
      const rec = await q.insertApiKey(db, { orgId, createdBy, name, prefix, sha256: sha256(token), lookupTag: tag, role: input.role, permissions, expiresAt })
      await audit(EventKind.created, { type: 'api_key', id: rec.id, prefix, orgId, userId: null }, actor, rec.createdAt, { name: safeText(name), expiresAt: iso(rec.expiresAt), permissions, role: rec.role, createdBy })
      return { id: rec.id, token, prefix, name, expiresAt: iso(rec.expiresAt), permissions: rec.permissions, role: rec.role, warnings }
    },
    async listApiKeys (orgId) {
      return (await q.listApiKeys(db, requireUuid(orgId, 'org-id'))).map(apiKeyView)
    },
    async getApiKey (id) {
      const rec = await q.getApiKey(db, requireUuid(id, 'id'))
      return rec === null ? null : apiKeyView(rec)
    },
    async revokeApiKey (id, actor) {
      const rec = await q.revokeApiKey(db, requireUuid(id, 'id'))
      if (rec === null) throw hgError(HG_ERR_MGMT_NOT_FOUND, 'no such API key')
      await audit(EventKind.revoked, { type: 'api_key', id: rec.id, prefix: rec.prefix, orgId: rec.orgId, userId: null }, actor, rec.revokedAt ?? new Date())
      return apiKeyView(rec)
    }
  }
}
