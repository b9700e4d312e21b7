import { LATEST_VERSION, schemaVersion } from '../store/migrate.js'
import type { Db } from '../store/postgres.js'
import type { CacheStatus } from '../store/prefix-cache.js'
import type { UpstreamCheck } from './upstream-check.js'

export interface HealthReport {
  postgres: 'ok' | 'down'
  migrated: boolean
  redis: CacheStatus
  /** Present only when upstream.readinessCheck is on. */
  upstream?: 'ok' | 'down'
}

export interface Health {
  /** Set on SIGTERM: readiness answers 503 from then on. */
  shuttingDown: boolean
  check(): Promise<HealthReport>
}

export interface HealthOptions {
  db: Pick<Db, 'pool'>
  redis: () => CacheStatus
  upstream?: UpstreamCheck | null
  /** A result is reused this long: probes from many sources cost one query a second at most. */
  cacheMs?: number
  now?: () => number
}

type PgState = { postgres: HealthReport['postgres'], migrated: boolean }

/**
 * Readiness (docs/DESIGN.md §5, §8): one statement on one pooled connection,
 * reused for `cacheMs` and shared by concurrent probes. Redis' status is read
 * fresh (it costs nothing); the upstream check caches its own answer.
 */
export function createHealth (opts: HealthOptions): Health {
  const now = opts.now ?? Date.now
  const cacheMs = opts.cacheMs ?? 1000
  const upstreamCheck = opts.upstream ?? null
  let last: (PgState & { at: number }) | null = null
  let inFlight: Promise<PgState> | null = null

  async function probe (): Promise<PgState> {
    try {
      const version = await schemaVersion(opts.db.pool)
      return { postgres: 'ok', migrated: version >= LATEST_VERSION }
    } catch {
      return { postgres: 'down', migrated: false }
    }
  }

  return {
    shuttingDown: false,
    async check () {
      const [, upstream] = await Promise.all([
        (last === null || now() - last.at >= cacheMs)
          ? (inFlight ??= probe().then(r => {
              last = { at: now(), ...r }
              inFlight = null
              return r
            }))
          : null,
        upstreamCheck?.status()
      ])
      const pg = last ?? { postgres: 'down' as const, migrated: false }
      return { postgres: pg.postgres, migrated: pg.migrated, redis: opts.redis(), ...(upstream === undefined ? {} : { upstream }) }
    }
  }
}

/** The readiness answer as the metrics' per-dependency gauge wants it. */
export function dependencyReadiness (r: { ready: boolean, report: HealthReport | null }): { ready: boolean, dependencies: Record<string, boolean> } {
  const dependencies: Record<string, boolean> = {}
  if (r.report !== null) {
    dependencies.postgres = r.report.postgres === 'ok'
    if (r.report.redis !== 'disabled') dependencies.redis = r.report.redis === 'ok'
    if (r.report.upstream !== undefined) dependencies.upstream = r.report.upstream === 'ok'
  }
  return { ready: r.ready, dependencies }
}
