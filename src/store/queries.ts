import type { Db } from './postgres.js'
import type { Candidate, PrefixEntry } from './prefix-cache.js'

/**
 * Every SQL statement of the service. Names are prepared-statement names:
 * the same name must always carry the same text.
 */

/**
 * Revoked or long-expired tokens drop out of the candidate lists after this window.
 * Recently used tokens come first: a token whose memo entry expired is usually
 * re-verified with one compare, not half the list.
 */
const CANDIDATE_GRACE = "interval '7 days'"

const LIVE_OR_RECENT = `(revoked_at IS NULL OR revoked_at > now() - ${CANDIDATE_GRACE})
      AND (expires_at IS NULL OR expires_at > now() - ${CANDIDATE_GRACE})`

/**
 * One display prefix (docs/DESIGN.md §2 step 4): its untagged rows (partial index on
 * the prefix of the untagged rows) and whether any tagged row exists (prefix index).
 * An unknown prefix is `{ tagged: false, untagged: [] }`.
 */
export async function patPrefixEntry (db: Db, prefix: string): Promise<PrefixEntry> {
  const rows = await db.queryArrays<[tagged: boolean, id: string | null, hash: string | null]>('hg_pat_prefix', `
    SELECT e.tagged, c.id, c.secret_hash
    FROM (SELECT EXISTS (SELECT 1 FROM personal_access_tokens WHERE prefix = $1 AND lookup_tag IS NOT NULL) AS tagged) e
    LEFT JOIN LATERAL (
      SELECT id, secret_hash, last_used_at, created_at FROM personal_access_tokens
      WHERE prefix = $1 AND lookup_tag IS NULL
        AND ${LIVE_OR_RECENT}
    ) c ON true
    ORDER BY c.last_used_at DESC NULLS LAST, c.created_at DESC`, [prefix])
  const untagged: Candidate[] = []
  for (const [, id, hash] of rows) if (id !== null && hash !== null) untagged.push({ id, hash })
  return { tagged: rows[0]?.[0] ?? false, untagged }
}

/** Tagged candidates of several lookup tags in one indexed query (batched like the fresh state). */
export async function patTagCandidates (db: Db, tags: readonly string[]): Promise<Map<string, Candidate[]>> {
  const rows = await db.queryArrays<[tag: string, id: string, hash: string]>('hg_pat_tagged', `
    SELECT lookup_tag::text, id, secret_hash FROM personal_access_tokens
    WHERE lookup_tag = ANY($1::bigint[])
      AND ${LIVE_OR_RECENT}`, [tags])
  const out = new Map<string, Candidate[]>()
  for (const [tag, id, hash] of rows) {
    const list = out.get(tag)
    if (list === undefined) out.set(tag, [{ id, hash }])
    else list.push({ id, hash })
  }
  return out
}

/** Writes the tag of an untagged row after its first successful verification (once: a tagged row is left alone). */
export async function tagPat (db: Db, id: string, tag: string): Promise<void> {
  await db.query('hg_pat_tag', 'UPDATE personal_access_tokens SET lookup_tag = $2 WHERE id = $1 AND lookup_tag IS NULL', [id, tag])
}

export interface PatState {
  id: string
  secretHash: string
  userId: string
  orgId: string
  prefix: string
  permissions: string[] | null
  /** ISO 8601 (UTC, milliseconds), or null for no expiry. */
  expiresAt: string | null
  revoked: boolean
  expired: boolean
  /** null when the user row is gone. */
  userStatus: string | null
  /** The user's current role in the token's org; null when not a member. */
  role: string | null
}

/**
 * Expiry as the x-hg-token-expires header wants it (what Date#toISOString gives),
 * formatted by PostgreSQL: the hot path parses no timestamp.
 */
export function expiresIsoSql (column: string): string {
  return `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`
}

type PatStateRow = [id: string, secretHash: string, userId: string, orgId: string, prefix: string, permissions: string[] | null,
  expiresAt: string | null, revoked: boolean, expired: boolean, userStatus: string | null, role: string | null]

/** The fresh state of several PATs in one indexed query (docs/DESIGN.md §2 step 5); rows as arrays (the hot path). */
export async function patStates (db: Db, ids: readonly string[]): Promise<Map<string, PatState>> {
  const rows = await db.queryArrays<PatStateRow>('hg_pat_states', `
    SELECT t.id, t.secret_hash, t.user_id, t.org_id, t.prefix, t.permissions, ${expiresIsoSql('t.expires_at')},
           t.revoked_at IS NOT NULL,
           (t.expires_at IS NOT NULL AND t.expires_at <= now()),
           u.status, m.role
    FROM personal_access_tokens t
    LEFT JOIN users u ON u.id = t.user_id
    LEFT JOIN org_memberships m ON m.org_id = t.org_id AND m.user_id = t.user_id
    WHERE t.id = ANY($1::uuid[])`, [ids])
  const out = new Map<string, PatState>()
  for (const [id, secretHash, userId, orgId, prefix, permissions, expiresAt, revoked, expired, userStatus, role] of rows) {
    out.set(id, { id, secretHash, userId, orgId, prefix, permissions, expiresAt, revoked, expired, userStatus, role })
  }
  return out
}

export interface ApiKeyState {
  id: string
  orgId: string
  prefix: string
  role: string
  permissions: string[] | null
  /** ISO 8601 (UTC, milliseconds), or null for no expiry. */
  expiresAt: string | null
  revoked: boolean
  expired: boolean
  /** Hex of the stored SHA-256: the batch key. */
  sha256Hex: string
}

type ApiKeyStateRow = [id: string, orgId: string, prefix: string, role: string, permissions: string[] | null,
  expiresAt: string | null, revoked: boolean, expired: boolean, sha256Hex: string]

/** The fresh state of several API keys, looked up by the SHA-256 of the whole key (unique index). */
export async function apiKeyStates (db: Db, hashes: readonly Buffer[]): Promise<Map<string, ApiKeyState>> {
  const rows = await db.queryArrays<ApiKeyStateRow>('hg_api_key_states', `
    SELECT k.id, k.org_id, k.prefix, k.role, k.permissions, ${expiresIsoSql('k.expires_at')},
           k.revoked_at IS NOT NULL,
           (k.expires_at IS NOT NULL AND k.expires_at <= now()),
           encode(k.secret_sha256, 'hex')
    FROM api_keys k
    WHERE k.secret_sha256 = ANY($1::bytea[])`, [hashes])
  const out = new Map<string, ApiKeyState>()
  for (const [id, orgId, prefix, role, permissions, expiresAt, revoked, expired, sha256Hex] of rows) {
    out.set(sha256Hex, { id, orgId, prefix, role, permissions, expiresAt, revoked, expired, sha256Hex })
  }
  return out
}

// --- management ------------------------------------------------------------

export interface Membership {
  userStatus: string | null
  role: string | null
}

export async function membership (db: Db, userId: string, orgId: string): Promise<Membership> {
  const rows = await db.query<{ status: string | null, role: string | null }>('hg_membership', `
    SELECT u.status, m.role
    FROM (SELECT $1::uuid AS user_id, $2::uuid AS org_id) q
    LEFT JOIN users u ON u.id = q.user_id
    LEFT JOIN org_memberships m ON m.user_id = q.user_id AND m.org_id = q.org_id`, [userId, orgId])
  return { userStatus: rows[0]?.status ?? null, role: rows[0]?.role ?? null }
}

export interface NewPat {
  userId: string
  orgId: string
  name: string
  prefix: string
  secretHash: string
  /** lookupTag() of the token; absent or null: a row like an imported one, walked by prefix until first used. */
  lookupTag?: string | null
  permissions: string[] | null
  expiresAt: Date | null
}

export interface PatRecord {
  id: string
  userId: string
  orgId: string
  name: string
  prefix: string
  permissions: string[] | null
  expiresAt: Date | null
  createdAt: Date
  lastUsedAt: Date | null
  revokedAt: Date | null
}

const PAT_COLUMNS = 'id, user_id, org_id, name, prefix, permissions, expires_at, created_at, last_used_at, revoked_at'

interface PatRow {
  id: string
  user_id: string
  org_id: string
  name: string
  prefix: string
  permissions: string[] | null
  expires_at: Date | null
  created_at: Date
  last_used_at: Date | null
  revoked_at: Date | null
}

function toPat (r: PatRow): PatRecord {
  return {
    id: r.id,
    userId: r.user_id,
    orgId: r.org_id,
    name: r.name,
    prefix: r.prefix,
    permissions: r.permissions,
    expiresAt: r.expires_at,
    createdAt: r.created_at,
    lastUsedAt: r.last_used_at,
    revokedAt: r.revoked_at
  }
}

export async function insertPat (db: Db, pat: NewPat): Promise<PatRecord> {
  const rows = await db.query<PatRow>('hg_pat_insert', `
    INSERT INTO personal_access_tokens (user_id, org_id, name, prefix, secret_hash, permissions, expires_at, lookup_tag)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
    RETURNING ${PAT_COLUMNS}`,
  [pat.userId, pat.orgId, pat.name, pat.prefix, pat.secretHash, pat.permissions, pat.expiresAt, pat.lookupTag ?? null])
  const row = rows[0]
  if (row === undefined) throw new Error('insert returned no row')
  return toPat(row)
}

export async function listPats (db: Db, userId: string, orgId: string | null): Promise<PatRecord[]> {
  const rows = await db.query<PatRow>('hg_pat_list', `
    SELECT ${PAT_COLUMNS} FROM personal_access_tokens
    WHERE user_id = $1 AND ($2::uuid IS NULL OR org_id = $2)
    ORDER BY created_at DESC, id`, [userId, orgId])
  return rows.map(toPat)
}

export async function getPat (db: Db, id: string): Promise<PatRecord | null> {
  const rows = await db.query<PatRow>('hg_pat_get', `SELECT ${PAT_COLUMNS} FROM personal_access_tokens WHERE id = $1`, [id])
  const row = rows[0]
  return row === undefined ? null : toPat(row)
}

/** Sets revoked_at once; returns the token (revoked now or before), null when absent. */
export async function revokePat (db: Db, id: string): Promise<PatRecord | null> {
  const rows = await db.query<PatRow>('hg_pat_revoke', `
    UPDATE personal_access_tokens SET revoked_at = coalesce(revoked_at, now())
    WHERE id = $1 RETURNING ${PAT_COLUMNS}`, [id])
  const row = rows[0]
  return row === undefined ? null : toPat(row)
}

export async function touchPats (db: Db, ids: readonly string[], at: Date): Promise<void> {
  await db.query('hg_pat_touch', `
    UPDATE personal_access_tokens SET last_used_at = $2
    WHERE id = ANY($1::uuid[]) AND (last_used_at IS NULL OR last_used_at < $2)`, [ids, at])
}

export async function touchApiKeys (db: Db, ids: readonly string[], at: Date): Promise<void> {
  await db.query('hg_api_key_touch', `
    UPDATE api_keys SET last_used_at = $2
    WHERE id = ANY($1::uuid[]) AND (last_used_at IS NULL OR last_used_at < $2)`, [ids, at])
}

// --- API keys ----------------------------------------------------------------

export interface NewApiKey {
  orgId: string
  createdBy: string
  name: string
  prefix: string
  sha256: Buffer
  lookupTag: string
  role: string
  permissions: string[] | null
  expiresAt: Date | null
}

export interface ApiKeyRecord {
  id: string
  orgId: string
  createdBy: string | null
  name: string
  prefix: string
  role: string
  permissions: string[] | null
  expiresAt: Date | null
  createdAt: Date
  lastUsedAt: Date | null
  revokedAt: Date | null
}

const KEY_COLUMNS = 'id, org_id, created_by, name, prefix, role, permissions, expires_at, created_at, last_used_at, revoked_at'

interface KeyRow {
  id: string
  org_id: string
  created_by: string | null
  name: string
  prefix: string
  role: string
  permissions: string[] | null
  expires_at: Date | null
  created_at: Date
  last_used_at: Date | null
  revoked_at: Date | null
}

function toKey (r: KeyRow): ApiKeyRecord {
  return {
    id: r.id,
    orgId: r.org_id,
    createdBy: r.created_by,
    name: r.name,
    prefix: r.prefix,
    role: r.role,
    permissions: r.permissions,
    expiresAt: r.expires_at,
    createdAt: r.created_at,
    lastUsedAt: r.last_used_at,
    revokedAt: r.revoked_at
  }
}

export async function insertApiKey (db: Db, k: NewApiKey): Promise<ApiKeyRecord> {
  const rows = await db.query<KeyRow>('hg_api_key_insert', `
    INSERT INTO api_keys (org_id, created_by, name, prefix, secret_sha256, role, permissions, expires_at, lookup_tag)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
    RETURNING ${KEY_COLUMNS}`,
  [k.orgId, k.createdBy, k.name, k.prefix, k.sha256, k.role, k.permissions, k.expiresAt, k.lookupTag])
  const row = rows[0]
  if (row === undefined) throw new Error('insert returned no row')
  return toKey(row)
}

export async function listApiKeys (db: Db, orgId: string): Promise<ApiKeyRecord[]> {
  const rows = await db.query<KeyRow>('hg_api_key_list', `SELECT ${KEY_COLUMNS} FROM api_keys WHERE org_id = $1 ORDER BY created_at DESC, id`, [orgId])
  return rows.map(toKey)
}

export async function getApiKey (db: Db, id: string): Promise<ApiKeyRecord | null> {
  const rows = await db.query<KeyRow>('hg_api_key_get', `SELECT ${KEY_COLUMNS} FROM api_keys WHERE id = $1`, [id])
  const row = rows[0]
  return row === undefined ? null : toKey(row)
}

export async function revokeApiKey (db: Db, id: string): Promise<ApiKeyRecord | null> {
  const rows = await db.query<KeyRow>('hg_api_key_revoke', `
    UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 RETURNING ${KEY_COLUMNS}`, [id])
  const row = rows[0]
  return row === undefined ? null : toKey(row)
}
