import type { PrefixCache } from '../store/prefix-cache.js'
import { LATEST_VERSION, schemaVersion } from '../store/migrate.js'
import type { Db } from '../store/postgres.js'

export interface HealthReport {
  postgres: 'ok' | 'down'
  migrated: boolean
  redis: 'ok' | 'degraded' | 'disabled'
}

export interface Health {
  /** Set on SIGTERM: readiness answers 503 from then on. */
  shuttingDown: boolean
  check(): Promise<HealthReport>
}

/** Readiness (docs/DESIGN.md §5, ops port): PostgreSQL answers and is migrated; Redis state as the cache sees it. */
export function createHealth (deps: { db: Db, cache: PrefixCache }): Health {
  const { db, cache } = deps
  return {
    shuttingDown: false,
    async check () {
      const [version, pgOk] = await Promise.all([
        schemaVersion(db.pool).catch(() => -1),
        db.ping()
      ])
      return {
        postgres: pgOk && version >= 0 ? 'ok' : 'down',
        migrated: version >= LATEST_VERSION,
        redis: cache.status()
      }
    }
  }
}
