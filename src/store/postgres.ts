import pg from 'pg'
import type { QueryResultRow } from 'pg'
import { hgError, HG_ERR_STORE_UNAVAILABLE } from '../errors.js'

/**
 * How PostgreSQL is reached (docs/DESIGN.md §8). `none`: a session of our own per
 * connection (direct, or a pooler that passes startup parameters through):
 * named prepared statements, planned once per connection, and the
 * statement_timeout startup parameter. `transaction`: through PgBouncer (any
 * pool mode, any version) or another pooler that hands each transaction to
 * whichever server connection is free: unnamed statements, no session state,
 * and what must run with a server-side limit runs in a transaction that sets
 * it with SET LOCAL (what a pooler keeps together).
 */
export type Pooler = 'none' | 'transaction'

export interface DbOptions {
  url: string
  poolSize: number
  connectTimeoutMs: number
  /** Slower than this = HG_ERR_STORE_UNAVAILABLE; also PostgreSQL's statement_timeout for our statements. */
  queryTimeoutMs: number
  pooler?: Pooler
  applicationName?: string
  /**
   * Errors that betray a transaction pooler the config does not know about
   * (prepared statement "already exists" / "does not exist", a refused startup
   * parameter): called with a message naming the switch, at most every 30 s.
   */
  onPoolerMismatch?: (message: string, err: unknown) => void
}

export interface QueryObserver {
  (name: string, seconds: number, ok: boolean): void
}

export interface Db {
  pool: pg.Pool
  pooler: Pooler
  /**
   * A statement by name (prepared once per connection with pooler `none`,
   * unnamed with `transaction`); any failure becomes HG_ERR_STORE_UNAVAILABLE (fail closed).
   */
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
 * The client's own timer is a backstop for a server that does not answer at
 * all: a statement PostgreSQL cancels at statement_timeout comes back as an
 * error and leaves the connection usable, one the client abandons costs the
 * connection.
 */
const CLIENT_TIMEOUT_MARGIN_MS = 250

export interface PoolOptions {
  url: string
  poolSize: number
  connectTimeoutMs: number
  /** The client-side limit; 0 = none (the server's SET LOCAL limits bound the work). */
  queryTimeoutMs: number
  /** Sent as a startup parameter; null = none (what a pooler refuses or would not keep). */
  statementTimeoutMs: number | null
  applicationName: string
}

export function createPool (opts: PoolOptions): pg.Pool {
  const pool = new pg.Pool({
    connectionString: opts.url,
    max: opts.poolSize,
    connectionTimeoutMillis: opts.connectTimeoutMs,
    ...(opts.queryTimeoutMs > 0 ? { query_timeout: opts.queryTimeoutMs } : {}),
    ...(opts.statementTimeoutMs === null ? {} : { statement_timeout: opts.statementTimeoutMs }),
    idleTimeoutMillis: 30_000,
    application_name: opts.applicationName
  })
  // An idle client losing its server emits here; without a listener the process would crash.
  pool.on('error', () => {})
  return pool
}

/**
 * Planner settings for the role the sidecar logs in as (docs/DEPLOYMENT.md:
 * `ALTER ROLE <role> SET ...`; never a session SET, which a transaction pooler
 * leaks into other clients' sessions and does not keep for ours). Every
 * statement the sidecar sends is a lookup by key on small, hot rows that stay
 * in shared buffers, whose best plan does not depend on the values bound to
 * it (test/store/query-plans.test.ts shows both):
 * - random_page_cost 1.1: with the default (4, a spinning disk's) the planner
 *   scans a table of a few thousand tokens and hash-joins users and
 *   memberships, several times the CPU of the index lookups it picks here;
 * - plan_cache_mode force_generic_plan: left to choose, PostgreSQL planned the
 *   fresh-state batch anew on most executions of a named statement (~0.3 ms
 *   of server CPU, against 0.04-0.1 ms to run the cached plan).
 */
export const RECOMMENDED_PLANNER_SETTINGS = {
  random_page_cost: '1.1',
  plan_cache_mode: 'force_generic_plan'
} as const

const SWITCH = 'set DATABASE_POOLER=transaction (config database.pooler: transaction)'

/**
 * The operator's fix when an error shows that a pooler sits between us and
 * PostgreSQL and the config says `none`; null for any other error. Walks the
 * cause chain (the store wraps driver errors).
 */
export function poolerHint (err: unknown): string | null {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code
    if (code === '42P05' || code === '26000') {
      return `PostgreSQL is reached through a transaction pooler: a prepared statement ${code === '42P05' ? 'already exists' : 'does not exist'} on the server connection the pooler picked; ${SWITCH}`
    }
    if (code === '08P01' && /unsupported startup parameter/i.test(e.message)) {
      return `the pooler in front of PostgreSQL refused a startup parameter (${e.message}); ${SWITCH}, which sends none`
    }
  }
  return null
}

const HINT_INTERVAL_MS = 30_000

export function createDb (opts: DbOptions): Db {
  const pooler = opts.pooler ?? 'none'
  const pool = createPool({
    url: opts.url,
    poolSize: opts.poolSize,
    connectTimeoutMs: opts.connectTimeoutMs,
    queryTimeoutMs: opts.queryTimeoutMs + CLIENT_TIMEOUT_MARGIN_MS,
    statementTimeoutMs: pooler === 'none' ? opts.queryTimeoutMs : null,
    applicationName: opts.applicationName ?? 'hg-auth-sidecar'
  })
  const observers: QueryObserver[] = []
  const named = pooler === 'none'
  const localTimeout = `BEGIN; SET LOCAL statement_timeout = ${Math.trunc(opts.queryTimeoutMs)}`
  let closed = false
  let hintedAt = -Infinity

  function mismatch (err: unknown): void {
    if (opts.onPoolerMismatch === undefined || pooler !== 'none') return
    const hint = poolerHint(err)
    if (hint === null || Date.now() - hintedAt < HINT_INTERVAL_MS) return
    hintedAt = Date.now()
    opts.onPoolerMismatch(hint, err)
  }

  // Through a transaction pooler a statement that can wait on a row lock gets
  // its server-side limit in its own transaction; reads are bounded by the
  // role's statement_timeout (docs/DEPLOYMENT.md), which every server
  // connection the pooler opens starts with.
  async function inTransaction (config: pg.QueryConfig | pg.QueryArrayConfig): Promise<pg.QueryResult> {
    const client = await pool.connect()
    let failed: unknown
    try {
      await client.query(localTimeout)
      const res = await client.query(config)
      await client.query('COMMIT')
      return res
    } catch (err) {
      failed = err
      await client.query('ROLLBACK').catch(() => {})
      throw err
    } finally {
      client.release(failed instanceof Error && (failed as { code?: unknown }).code === undefined ? failed : undefined)
    }
  }

  async function run<R> (name: string, config: pg.QueryConfig | pg.QueryArrayConfig): Promise<R[]> {
    const start = performance.now()
    let ok = false
    try {
      const res = !named && WRITES.test(config.text) ? await inTransaction(config) : await pool.query(config)
      ok = true
      return res.rows as R[]
    } catch (err) {
      mismatch(err)
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
    pooler,
    query: <R extends QueryResultRow>(name: string, text: string, values: unknown[]) =>
      run<R>(name, named ? { name, text, values } : { text, values }),
    queryArrays: <R extends unknown[]>(name: string, text: string, values: unknown[]) =>
      run<R>(name, named ? { name, text, values, rowMode: 'array' } : { text, values, rowMode: 'array' }),
    async ping () {
      try {
        await pool.query('SELECT 1')
        return true
      } catch (err) {
        mismatch(err)
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

const WRITES = /^\s*(INSERT|UPDATE|DELETE)\b/i

/**
 * The statement_timeout PostgreSQL applies to this connection's statements
 * by default, in milliseconds (0 = none): through a transaction pooler, the
 * role's or database's setting (ALTER ROLE ... SET statement_timeout).
 */
export async function serverStatementTimeoutMs (pool: pg.Pool): Promise<number> {
  const { rows } = await pool.query<{ ms: string }>("SELECT setting AS ms FROM pg_settings WHERE name = 'statement_timeout'")
  return Number(rows[0]?.ms ?? 0)
}

/**
 * At start: refuses a pooler the config does not know about when the error
 * says so (PgBouncer refuses the statement_timeout startup parameter), and
 * warns when, through a transaction pooler, reads have no server-side limit.
 * Any other failure is left to readiness (the database may come up later).
 */
export async function checkDatabase (db: Db, warn: (message: string) => void): Promise<void> {
  let ms: number
  try {
    ms = await serverStatementTimeoutMs(db.pool)
  } catch (err) {
    const hint = poolerHint(err)
    if (hint !== null) throw new Error(hint, { cause: err })
    return
  }
  if (db.pooler === 'transaction' && ms === 0) {
    warn('statement_timeout is 0 for this role: PostgreSQL keeps running the reads the sidecar has given up on; set one for the role the sidecar logs in as (ALTER ROLE <role> SET statement_timeout = \'5s\', docs/DEPLOYMENT.md)')
  }
}
