import pg from 'pg'
import type { QueryResultRow } from 'pg'
import { hgError, HG_ERR_STORE_UNAVAILABLE } from '../errors.js'

export interface DbOptions {
  url: string
  poolSize: number
  connectTimeoutMs: number
  queryTimeoutMs: number
  applicationName?: string
}

export interface QueryObserver {
  (name: string, seconds: number, ok: boolean): void
}

export interface Db {
  pool: pg.Pool
  /** A named (prepared) statement; any failure becomes HG_ERR_STORE_UNAVAILABLE (fail closed). */
  query<R extends QueryResultRow>(name: string, text: string, values: unknown[]): Promise<R[]>
  /** The same, rows as arrays in select-list order: no per-row object with named fields (the hot-path reads). */
  queryArrays<R extends unknown[]>(name: string, text: string, values: unknown[]): Promise<R[]>
  ping(): Promise<boolean>
  stats(): { total: number, idle: number, waiting: number, max: number }
  onQuery(observer: QueryObserver): void
  close(): Promise<void>
}

// Parse int8 (count(*)) as a number: the counts here stay far below 2^53.
pg.types.setTypeParser(20, v => Number(v))

/**
 * Planner settings for this service's sessions. Every statement it sends is
 * a lookup by key on small, hot rows that stay in shared buffers, and each
 * is a named prepared statement whose best plan does not depend on the
 * values bound to it (test/store/query-plans.test.ts shows both):
 * - random_page_cost 1.1: with the default (4, a spinning disk's) the planner
 *   scans a table of a few thousand tokens and hash-joins users and
 *   memberships, several times the CPU of the index lookups it picks here;
 * - plan_cache_mode force_generic_plan: left to choose, PostgreSQL planned the
 *   fresh-state batch anew on most executions (~0.3 ms of server CPU, against
 *   0.04-0.1 ms to run the cached plan).
 * Sent as statements on each new connection, not as a startup option: a
 * pooler such as PgBouncer may reject unknown startup parameters, while a SET
 * it mishandles costs only the plan.
 */
export const SESSION_SETTINGS = {
  random_page_cost: '1.1',
  plan_cache_mode: 'force_generic_plan'
} as const

const SESSION_SQL = Object.entries(SESSION_SETTINGS).map(([k, v]) => `SET ${k} = ${v}`).join('; ')

export function createPool (opts: DbOptions): pg.Pool {
  const pool = new pg.Pool({
    connectionString: opts.url,
    max: opts.poolSize,
    connectionTimeoutMillis: opts.connectTimeoutMs,
    query_timeout: opts.queryTimeoutMs,
    idleTimeoutMillis: 30_000,
    application_name: opts.applicationName ?? 'hg-auth-sidecar',
    // Awaited before the connection runs anything else. A failure leaves the
    // server's defaults (slower plans, same answers); a broken connection
    // fails its first real statement as it would have anyway.
    onConnect: async client => {
      try {
        await client.query(SESSION_SQL)
      } catch {}
    }
  })
  // An idle client losing its server emits here; without a listener the process would crash.
  pool.on('error', () => {})
  return pool
}

export function createDb (opts: DbOptions): Db {
  const pool = createPool(opts)
  const observers: QueryObserver[] = []
  let closed = false

  async function run<R> (name: string, config: pg.QueryConfig | pg.QueryArrayConfig): Promise<R[]> {
    const start = performance.now()
    let ok = false
    try {
      const res = await pool.query(config)
      ok = true
      return res.rows as R[]
    } catch (err) {
      throw hgError(HG_ERR_STORE_UNAVAILABLE, undefined, err)
    } finally {
      if (observers.length > 0) {
        const seconds = (performance.now() - start) / 1000
        for (const o of observers) o(name, seconds, ok)
      }
    }
  }

  return {
    pool,
    query: <R extends QueryResultRow>(name: string, text: string, values: unknown[]) => run<R>(name, { name, text, values }),
    queryArrays: <R extends unknown[]>(name: string, text: string, values: unknown[]) => run<R>(name, { name, text, values, rowMode: 'array' }),
    async ping () {
      try {
        await pool.query('SELECT 1')
        return true
      } catch {
        return false
      }
    },
    stats () {
      return { total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount, max: opts.poolSize }
    },
    onQuery (observer) {
      observers.push(observer)
    },
    async close () {
      if (closed) return
      closed = true
      await pool.end()
    }
  }
}
