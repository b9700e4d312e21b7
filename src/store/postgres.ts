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
 * Planner costs for this service's sessions. Every statement it sends is a
 * lookup by key on small, hot rows that stay in shared buffers; with the
 * default random_page_cost (4, a spinning disk's) the planner prefers to scan
 * a table of a few thousand tokens and hash-join users and memberships,
 * several times the CPU of the index lookups it picks with this setting
 * (test/store/query-plans.test.ts). Sent as a statement on each new
 * connection, not as a startup option: a pooler such as PgBouncer may reject
 * unknown startup parameters, while a SET it mishandles costs only the plan.
 */
export const SESSION_SETTINGS = 'SET random_page_cost = 1.1'

export function createPool (opts: DbOptions): pg.Pool {
  const pool = new pg.Pool({
    connectionString: opts.url,
    max: opts.poolSize,
    connectionTimeoutMillis: opts.connectTimeoutMs,
    query_timeout: opts.queryTimeoutMs,
    idleTimeoutMillis: 30_000,
    application_name: opts.applicationName ?? 'hg-auth-sidecar'
  })
  // An idle client losing its server emits here; without a listener the process would crash.
  pool.on('error', () => {})
  // Queued ahead of the statement the connection was opened for; a failure
  // leaves the server's defaults (slower plans, same answers).
  pool.on('connect', client => { client.query(SESSION_SETTINGS).catch(() => {}) })
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
