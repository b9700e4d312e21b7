import type { Pool, PoolClient, QueryConfig, QueryResultRow } from 'pg'
import { MIGRATIONS, type Migration } from './migrations/index.js'
import { checkDatabase, createPool, type Db } from './postgres.js'

const LOCK_ID = 0x68675f73 // "hg_s": serializes concurrent starts of several replicas

export interface MigrateResult {
  applied: number[]
  current: number
}

export interface MigrateOptions {
  /** How long to wait for another process that is migrating. */
  lockWaitMs?: number
  /**
   * How long one migration statement may wait for a table lock. Queries queue
   * behind a waiting ALTER TABLE, so this is short, and a migration that hits
   * it is retried (below) instead of holding up the request path.
   */
  ddlLockTimeoutMs?: number
  /** How long one migration statement may run. */
  statementTimeoutMs?: number
  /** Attempts of one migration whose table locks time out. */
  attempts?: number
}

const DEFAULTS: Required<MigrateOptions> = {
  lockWaitMs: 120_000,
  ddlLockTimeoutMs: 1000,
  statementTimeoutMs: 300_000,
  attempts: 10
}

export const LATEST_VERSION = Math.max(...MIGRATIONS.map(m => m.version))

const LOCK_NOT_AVAILABLE = '55P03'
const RETRYABLE = new Set([LOCK_NOT_AVAILABLE, '40P01', '40001'])

type Step = { version: number } | { current: number }

/**
 * One transaction: take the migration lock, read what is applied, apply the
 * next pending migration. Everything lives and dies with the transaction, so
 * it holds through a transaction pooler (a session lock and its unlock may
 * land on different server connections there, and leak), and PostgreSQL
 * drops the lock of a client that vanished.
 */
async function step (client: PoolClient, sorted: readonly Migration[], o: Required<MigrateOptions>): Promise<Step> {
  // The pool's own client-side timeout (the request path's, a few seconds) would cut
  // the wait for the lock short: the server's limits set below bound each statement.
  const clientTimeout = Math.max(o.lockWaitMs, o.statementTimeoutMs) + 30_000
  const q = async <R extends QueryResultRow>(text: string, values?: unknown[]): Promise<R[]> =>
    (await client.query<R>({ text, values, query_timeout: clientTimeout } as QueryConfig)).rows
  await q('BEGIN')
  try {
    await q(`SET LOCAL lock_timeout = ${o.lockWaitMs}; SET LOCAL statement_timeout = ${o.lockWaitMs + 1000}`)
    await q('SELECT pg_advisory_xact_lock($1)', [LOCK_ID])
    await q(`SET LOCAL lock_timeout = ${o.ddlLockTimeoutMs}; SET LOCAL statement_timeout = ${o.statementTimeoutMs}`)
    await q(`CREATE TABLE IF NOT EXISTS hg_sidecar_migrations (
      version integer PRIMARY KEY,
      name text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`)
    const rows = await q<{ version: number }>('SELECT version FROM hg_sidecar_migrations')
    const done = new Set(rows.map(r => r.version))
    const next = sorted.find(m => !done.has(m.version))
    if (next === undefined) {
      await q('COMMIT')
      return { current: Math.max(0, ...done) }
    }
    try {
      await q(next.sql)
    } catch (err) {
      throw Object.assign(new Error(`migration ${next.version} (${next.name}) failed: ${(err as Error).message}`, { cause: err }), { code: (err as { code?: unknown }).code })
    }
    await q('INSERT INTO hg_sidecar_migrations (version, name) VALUES ($1, $2)', [next.version, next.name])
    await q('COMMIT')
    return { version: next.version }
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {})
    throw err
  }
}

/**
 * Applies the pending migrations in order, each in its own transaction under
 * pg_advisory_xact_lock; re-running is a no-op, and any number of processes
 * may run it at once (they wait for each other).
 */
export async function migrate (pool: Pool, migrations: readonly Migration[] = MIGRATIONS, options: MigrateOptions = {}): Promise<MigrateResult> {
  const o = { ...DEFAULTS, ...options }
  const sorted = [...migrations].sort((a, b) => a.version - b.version)
  const applied: number[] = []
  let failures = 0
  for (;;) {
    const client = await pool.connect()
    let res: Step
    try {
      res = await step(client, sorted, o)
    } catch (err) {
      const code = (err as { code?: unknown }).code
      client.release(typeof code === 'string' ? undefined : err as Error)
      if (typeof code === 'string' && RETRYABLE.has(code) && ++failures < o.attempts) {
        await new Promise(resolve => setTimeout(resolve, Math.min(200 * 2 ** failures, 5000) * (0.5 + Math.random())))
        continue
      }
      throw err
    }
    client.release()
    if ('current' in res) return { applied, current: res.current }
    applied.push(res.version)
    failures = 0
  }
}

export interface MigrationTarget {
  url: string | null
  migrateUrl: string | null
  connectTimeoutMs: number
}

/**
 * Runs the migrations on a connection of their own to `migrateUrl` when set
 * (a direct or session-mode connection), else to `url`. The limits are the
 * server's (SET LOCAL in each transaction), so this works through any pooler.
 */
export async function migrateDatabase (target: MigrationTarget, options: MigrateOptions = {}): Promise<MigrateResult> {
  const url = target.migrateUrl ?? target.url
  if (url === null) throw new Error('database.url is not resolved')
  const o = { ...DEFAULTS, ...options }
  const pool = createPool({
    url,
    poolSize: 1,
    connectTimeoutMs: Math.max(target.connectTimeoutMs, 5000),
    queryTimeoutMs: 0,
    statementTimeoutMs: null,
    applicationName: 'hg-sidecar-migrate'
  })
  try {
    return await migrate(pool, MIGRATIONS, o)
  } finally {
    await pool.end()
  }
}

export interface StartTarget extends MigrationTarget {
  migrateOnStart: boolean
}

/**
 * At the sidecar's start: checks the server (docs/DESIGN.md §8) and, with
 * migrateOnStart, migrates on the service's own pool unless migrateUrl names
 * another way in.
 */
export async function prepareDatabase (db: Db, target: StartTarget, log: { info(obj: object, msg: string): void, warn(msg: string): void }): Promise<void> {
  await checkDatabase(db, warning => log.warn(warning))
  if (!target.migrateOnStart) return
  const res = target.migrateUrl === null ? await migrate(db.pool) : await migrateDatabase(target)
  if (res.applied.length > 0) log.info({ applied: res.applied, version: res.current }, 'migrations applied')
}

/** The schema version in the database, 0 when never migrated: one statement on one connection. */
export async function schemaVersion (pool: Pick<Pool, 'query'>): Promise<number> {
  try {
    const { rows } = await pool.query<{ v: number }>('SELECT coalesce(max(version), 0)::int AS v FROM hg_sidecar_migrations')
    return rows[0]?.v ?? 0
  } catch (err) {
    if ((err as { code?: unknown }).code === '42P01') return 0 // undefined_table: never migrated
    throw err
  }
}
