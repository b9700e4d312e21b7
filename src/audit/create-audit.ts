import type { Auth } from '../auth/create-auth.js'
import type { Config } from '../config/schema.js'
import type { Logger } from '../logger.js'
import type { CredentialService } from '../management/service.js'
import { deleteExpiredEvents, insertEvent, insertEvents, listEvents } from '../store/events.js'
import type { Db } from '../store/postgres.js'
import type { EventFilter } from './events.js'
import { createLeakReporter, type LeakReporter } from './leaks.js'
import { createRetention, type Retention } from './retention.js'
import { createUseEventRecorder, type UseEventRecorder } from './use-events.js'

export interface Audit {
  /** Refused uses of known credentials, coalesced and written off the request path (docs/DESIGN.md §10). */
  useEvents: UseEventRecorder
  retention: Retention
  leaks: LeakReporter
  listEvents: (filter: EventFilter) => ReturnType<typeof listEvents>
  close(): Promise<void>
}

export interface AuditDeps {
  db: Db
  log: Logger
  auth: Pick<Auth, 'authenticatePat' | 'authenticateApiKey'>
  service: CredentialService
  observe: {
    credentialEvents(kind: string, count: number): void
    credentialEventsDropped(count: number): void
    credentialEventsExpired(count: number): void
  }
}

/** The audit trail and leak reports, built from the config (docs/DESIGN.md §10). */
export function createAudit (config: Config, deps: AuditDeps): Audit {
  const { db, log, observe } = deps
  const useEvents = createUseEventRecorder({
    flushIntervalMs: config.audit.useEvents.flushIntervalMs,
    minIntervalMs: config.audit.useEvents.minIntervalSeconds * 1000,
    maxPending: config.audit.useEvents.maxPending,
    write: events => insertEvents(db, events),
    onWritten: events => { for (const e of events) observe.credentialEvents(e.kind, 1) },
    onDropped: observe.credentialEventsDropped,
    onError: err => log.warn({ err }, 'credential event write failed')
  })
  const retention = createRetention({
    days: config.audit.retentionDays,
    intervalMs: config.audit.retentionSweepIntervalSeconds * 1000,
    batchSize: 500,
    deleteBatch: (days, batch) => deleteExpiredEvents(db, days, batch),
    onDeleted: observe.credentialEventsExpired,
    onError: err => log.warn({ err }, 'credential event retention sweep failed')
  })
  // Reported strings are verified by the very authenticators requests use: a report costs what a request costs.
  const leaks = createLeakReporter({
    authenticatePat: deps.auth.authenticatePat,
    authenticateApiKey: deps.auth.authenticateApiKey,
    async revoke (credential, actor) {
      await (credential.type === 'pat' ? deps.service.revokePat(credential.id, actor) : deps.service.revokeApiKey(credential.id, actor))
    },
    async record (event) {
      await insertEvent(db, event)
      observe.credentialEvents(event.kind, 1)
    }
  })
  return {
    useEvents,
    retention,
    leaks,
    listEvents: filter => listEvents(db, filter),
    async close () {
      await Promise.allSettled([useEvents.close(), retention.close()])
    }
  }
}
