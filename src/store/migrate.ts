import type { Pool } from 'pg'
import { MIGRATIONS, type Migration } from './migrations/index.js'

const LOCK_ID = 0x68675f73 // "hg_s": serializes concurrent starts of several replicas

export interface MigrateResult {
  applied: number[]
  current: number
}

export const LATEST_VERSION = Math.max(...MIGRATIONS.map(m => m.version))

/** Applies the pending migrations in order, each in its own transaction; re-running is a no-op. */
export async function migrate (pool: Pool, migrations: readonly Migration[] = MIGRATIONS): Promise<MigrateResult> {
  const client = await pool.connect()
  try {
    await client.query('SELECT pg_advisory_lock($1)', [LOCK_ID])
    try {
      await client.query(`CREATE TABLE IF NOT EXISTS hg_sidecar_migrations (
        version integer PRIMARY KEY,
        name text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
      )`)
      const { rows } = await client.query<{ version: number }>('SELECT version FROM hg_sidecar_migrations')
      const done = new Set(rows.map(r => r.version))
      const applied: number[] = []
      for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
        if (done.has(m.version)) continue
        await client.query('BEGIN')
        try {
          await client.query(m.sql)
          await client.query('INSERT INTO hg_sidecar_migrations (version, name) VALUES ($1, $2)', [m.version, m.name])
          await client.query('COMMIT')
        } catch (err) {
          await client.query('ROLLBACK')
          throw new Error(`migration ${m.version} (${m.name}) failed: ${(err as Error).message}`, { cause: err })
        }
        applied.push(m.version)
      }
      return { applied, current: Math.max(0, ...done, ...applied) }
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [LOCK_ID])
    }
  } finally {
    client.release()
  }
}

/** The schema version in the database, 0 when never migrated. */
export async function schemaVersion (pool: Pool): Promise<number> {
  const present = await pool.query<{ present: boolean }>("SELECT to_regclass('hg_sidecar_migrations') IS NOT NULL AS present")
  if (present.rows[0]?.present !== true) return 0
  const { rows } = await pool.query<{ v: number }>('SELECT coalesce(max(version), 0)::int AS v FROM hg_sidecar_migrations')
  return rows[0]?.v ?? 0
}
