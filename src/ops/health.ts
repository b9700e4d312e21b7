import type { PrefixCache } from '../store/prefix-cache.js'
import { LATEST_VERSION, schemaVersion } from '../store/migrate.js'
import type { Db } from '../store/postgres.js'
import type { UpstreamCheck } from './upstream-check.js'

export interface HealthReport {
  postgres: 'ok' | 'down'
  migrated: boolean
  redis: 'ok' | 'degraded' | 'disabled'
  /** Present only when upstream.readinessCheck is on. */
  upstream?: 'ok' | 'down'
}

export interface Health {
  /** Set on SIGTERM: readiness answers 503 from then on. */
  shuttingDown: boolean
  check(): Promise<HealthReport>
}

/** Readiness (docs/DESIGN.md §5, ops port): PostgreSQL answers and is migrated; Redis state as the cache sees it. */
export function createHealth (deps: { db: Db, cache: PrefixCache, upstream?: UpstreamCheck | null }): Health {
  const { db, cache } = deps
  const upstreamCheck = deps.upstream ?? null
  return {
    shuttingDown: false,
    async check () {
      const [version, pgOk, upstream] = await Promise.all([
        schemaVersion(db.pool).catch(() => -1),
        db.ping(),
        upstreamCheck?.status()
      ])
      return {
        postgres: pgOk && version >= 0 ? 'ok' : 'down',
        migrated: version >= LATEST_VERSION,
        redis: cache.status(),
        ...(upstream === undefined ? {} : { upstream })
      }
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
