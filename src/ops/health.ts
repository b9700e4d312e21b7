import type { Db } from '../store/postgres.js'
import { LATEST_VERSION, schemaVersion } from '../store/migrate.js'
import type { CacheStatus } from '../store/prefix-cache.js'
import type { Health, HealthReport } from './server.js'

export interface HealthOptions {
  db: Pick<Db, 'pool'>
  redis: () => CacheStatus
  /** A result is reused this long: probes from many sources cost one query a second at most. */
  cacheMs?: number
  now?: () => number
}

/**
 * Readiness (DESIGN.md 5, 8): one statement on one pooled connection, reused
 * for `cacheMs` and shared by concurrent probes. Redis' status is read fresh
 * (it costs nothing).
 */
export function createHealth (opts: HealthOptions): Health {
  const now = opts.now ?? Date.now
  const cacheMs = opts.cacheMs ?? 1000
  let last: { at: number, postgres: HealthReport['postgres'], migrated: boolean } | null = null
  let inFlight: Promise<{ postgres: HealthReport['postgres'], migrated: boolean }> | null = null

  async function probe (): Promise<{ postgres: HealthReport['postgres'], migrated: boolean }> {
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
      if (last === null || now() - last.at >= cacheMs) {
        inFlight ??= probe().then(r => {
          last = { at: now(), ...r }
          inFlight = null
          return r
        })
        await inFlight
      }
      const pg = last ?? { postgres: 'down' as const, migrated: false }
      return { postgres: pg.postgres, migrated: pg.migrated, redis: opts.redis() }
    }
  }
}
