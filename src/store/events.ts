import type { CredentialEvent, EventFilter, NewEvent } from '../audit/events.js'
import type { Db } from './postgres.js'

/** The credential_events statements (docs/DESIGN.md §10). Names are prepared-statement names. */

const COLUMNS = 'at, kind, credential_type, credential_id, prefix, org_id, user_id, actor_type, actor_id, client_ip, request_id, detail'

function values (e: NewEvent): unknown[] {
  const c = e.credential
  return [e.at, e.kind, c.type, c.id, c.prefix, c.orgId, c.userId, e.actor?.type ?? null, e.actor?.id ?? null, e.clientIp, e.requestId, e.detail === null ? null : JSON.stringify(e.detail)]
}

/** One event; `created` and `revoked` are kept once per credential (a retried call records nothing new). */
export async function insertEvent (db: Db, e: NewEvent): Promise<void> {
  await db.query('hg_event_insert', `
    INSERT INTO credential_events (${COLUMNS})
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::jsonb)
    ON CONFLICT (credential_id, kind) WHERE kind IN ('created', 'revoked') DO NOTHING`, values(e))
}

/** Many events in one statement (the use-event batches). */
export async function insertEvents (db: Db, events: readonly NewEvent[]): Promise<void> {
  if (events.length === 0) return
  const cols: unknown[][] = Array.from({ length: 12 }, () => [])
  for (const e of events) values(e).forEach((v, i) => cols[i]?.push(v))
  await db.query('hg_event_insert_batch', `
    INSERT INTO credential_events (${COLUMNS})
    SELECT at, kind, credential_type, credential_id, prefix, org_id, user_id, actor_type, actor_id, client_ip, request_id, detail::jsonb
    FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::uuid[], $5::text[], $6::uuid[], $7::uuid[],
                $8::text[], $9::text[], $10::text[], $11::text[], $12::text[])
      AS e(at, kind, credential_type, credential_id, prefix, org_id, user_id, actor_type, actor_id, client_ip, request_id, detail)
    ON CONFLICT (credential_id, kind) WHERE kind IN ('created', 'revoked') DO NOTHING`, cols)
}

interface EventRow {
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

function toEvent (r: EventRow): CredentialEvent {
  return {
    id: r.id,
    at: r.at.toISOString(),
    kind: r.kind,
    credentialType: r.credential_type,
    credentialId: r.credential_id,
    prefix: r.prefix,
    orgId: r.org_id,
    userId: r.user_id,
    actorType: r.actor_type,
    actorId: r.actor_id,
    clientIp: r.client_ip,
    requestId: r.request_id,
    detail: r.detail
  }
}

const FILTERS = [
  ['credentialId', 'c', 'credential_id = $?::uuid'],
  ['orgId', 'o', 'org_id = $?::uuid'],
  ['userId', 'u', 'user_id = $?::uuid'],
  ['kind', 'k', 'kind = $?'],
  ['since', 's', 'at >= $?'],
  ['before', 'b', '(at, id) < (SELECT b.at, b.id FROM credential_events b WHERE b.id = $?::bigint)']
] as const

/**
 * Newest first. Only the filters given make it into the statement (one
 * prepared statement per combination): sessions plan generically
 * (postgres.ts), and a generic plan of `$1 IS NULL OR col = $1` uses no index.
 */
export async function listEvents (db: Db, f: EventFilter): Promise<CredentialEvent[]> {
  const where: string[] = []
  const args: unknown[] = []
  let name = 'hg_events_list_'
  for (const [key, tag, cond] of FILTERS) {
    const v = f[key]
    if (v === undefined) continue
    args.push(v)
    where.push(cond.replace('$?', `$${args.length}`))
    name += tag
  }
  args.push(f.limit)
  const rows = await db.query<EventRow>(name, `
    SELECT id::text AS id, ${COLUMNS} FROM credential_events
    ${where.length === 0 ? '' : `WHERE ${where.join(' AND ')}`}
    ORDER BY at DESC, id DESC
    LIMIT $${args.length}`, args)
  return rows.map(toEvent)
}

/**
 * Deletes at most `batch` events older than `days` days; returns how many.
 * SKIP LOCKED: replicas sweeping at once share the work instead of queueing on each other's rows.
 */
export async function deleteExpiredEvents (db: Db, days: number, batch: number): Promise<number> {
  const rows = await db.query<{ n: number }>('hg_events_expire', `
    WITH gone AS (
      DELETE FROM credential_events WHERE id IN (
        SELECT id FROM credential_events
        WHERE at < now() - make_interval(days => $1::int)
        ORDER BY at
        LIMIT $2
        FOR UPDATE SKIP LOCKED)
      RETURNING 1)
    SELECT count(*)::int AS n FROM gone`, [days, batch])
  return rows[0]?.n ?? 0
}
