import { hash } from 'node:crypto'
import type { Test } from 'tap'
import type { Stack } from './stack.js'

export const ADMIN_TOKEN = 'test-admin-token-not-a-secret-0001'

export interface EventRow {
  id: string
  at: Date
  kind: string
  credential_type: string
  credential_id: string | null
  prefix: string | null
  org_id: string | null
  user_id: string | null
  actor_type: string | null
  actor_id: string | null
  client_ip: string | null
  request_id: string | null
  detail: Record<string, unknown> | null
}

/** A credential's events straight from the table, oldest first. */
export async function eventRows (env: Stack, credentialId: string, kind?: string): Promise<EventRow[]> {
  const res = await env.sql.query<EventRow>(`
    SELECT id::text AS id, at, kind, credential_type, credential_id, prefix, org_id, user_id,
           actor_type, actor_id, client_ip, request_id, detail
    FROM credential_events WHERE credential_id = $1 AND ($2::text IS NULL OR kind = $2) ORDER BY at, id`, [credentialId, kind ?? null])
  return res.rows
}

export async function countEvents (env: Stack, kind?: string): Promise<number> {
  const res = await env.sql.query<{ n: number }>('SELECT count(*)::int AS n FROM credential_events WHERE $1::text IS NULL OR kind = $1', [kind ?? null])
  return res.rows[0]?.n ?? 0
}

/**
 * The audit trail holds nothing secret: no credential-shaped string beyond a
 * 10-character prefix, none of the given secrets, no SHA-256 of them, no
 * bcrypt hash and no stored hash of any credential in the database.
 */
export async function assertNoSecretsInEvents (t: Test, env: Stack, secrets: readonly string[]): Promise<void> {
  const rows = await env.sql.query<{ id: string, kind: string, line: string }>('SELECT id::text AS id, kind, row_to_json(e)::text AS line FROM credential_events e')
  t.ok(rows.rows.length > 0, `${rows.rows.length} event rows checked`)
  const stored = await env.sql.query<{ h: string }>(`
    SELECT secret_hash AS h FROM personal_access_tokens
    UNION ALL SELECT encode(secret_sha256, 'hex') FROM api_keys
    UNION ALL SELECT encode(secret_sha256, 'base64') FROM api_keys`)
  const forbidden = [
    ...secrets,
    ...secrets.map(s => hash('sha256', s, 'hex')),
    ...secrets.map(s => hash('sha256', s, 'base64')),
    ...stored.rows.map(r => r.h)
  ]
  const bad: string[] = []
  // Named by row id and kind only: the failure message must not print what it found.
  for (const { id, kind, line } of rows.rows) {
    if (/hg_(pat|key)_[0-9a-fA-F]{4,}/.test(line)) bad.push(`credential-shaped value in event ${id} (${kind})`)
    if (/\$2[aby]\$\d\d\$/.test(line)) bad.push(`bcrypt hash in event ${id} (${kind})`)
    if (/[0-9a-fA-F]{64}/.test(line)) bad.push(`64 hex digits in event ${id} (${kind})`)
    if (forbidden.some(f => line.includes(f))) bad.push(`a secret or its hash in event ${id} (${kind})`)
  }
  t.same(bad, [], 'no secret, hash or credential-shaped value in any event')
}
