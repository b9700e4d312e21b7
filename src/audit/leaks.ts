import { hash } from 'node:crypto'
import type { Requester } from '../auth/bcrypt-pool.js'
import type { AuthResult } from '../auth/outcome.js'
import { parseCredential, type ParsedCredential } from '../credentials/format.js'
import { ActorType, EventKind, eventFrom, safeText, type Actor, type CredentialRef, type NewEvent } from './events.js'

/** One item of GitHub's secret-scanning partner payload. */
export interface LeakItem {
  token: string
  type: string
  url?: string
  source?: string
}

/** GitHub's expected answer per item. */
export interface LeakVerdict {
  token_hash: string
  token_type: string
  label: 'true_positive' | 'false_positive'
}

/** The most items one report may carry (a larger batch is refused with 400). */
export const MAX_LEAK_BATCH = 100

export interface LeakReporterDeps {
  /** The authenticators of the proxy: the same lookup, memo, cache and bcrypt pool a request uses. */
  authenticatePat: (cred: ParsedCredential, requester?: Requester) => Promise<AuthResult>
  authenticateApiKey: (cred: ParsedCredential) => Promise<AuthResult>
  /** Revocation through the management service: cache invalidation and the `revoked` event come with it. */
  revoke: (credential: CredentialRef, actor: Actor) => Promise<void>
  record: (event: NewEvent) => Promise<void>
  /** Reported tokens verified at once; each costs what one request costs. */
  concurrency?: number
}

export interface LeakContext {
  actorId: string | null
  clientIp: string | null
  requestId: string | null
  requester?: Requester
}

export interface LeakReporter {
  report(items: readonly LeakItem[], ctx: LeakContext): Promise<LeakVerdict[]>
}

interface Found {
  credential: CredentialRef
  revoked: boolean
}

/**
 * docs/DESIGN.md §10. A reported string is ours when it verifies as a credential the
 * way a request's would (PAT: prefix candidates + bcrypt; API key: SHA-256),
 * whatever its state: a live one is revoked at once, one already revoked is a
 * true positive that changes nothing but is recorded. Anything else (not our
 * format, unknown, wrong secret) is a false positive and changes nothing.
 */
export function createLeakReporter (deps: LeakReporterDeps): LeakReporter {
  const concurrency = Math.max(1, deps.concurrency ?? 2)

  async function identify (token: string, requester: Requester | undefined): Promise<Found | null> {
    const cred = parseCredential(token)
    if (cred === null) return null
    const result = cred.kind === 'pat' ? await deps.authenticatePat(cred, requester) : await deps.authenticateApiKey(cred)
    if (result.ok) {
      const p = result.principal
      return { credential: { type: p.type, id: p.credentialId, prefix: p.prefix, orgId: p.orgId, userId: p.userId }, revoked: false }
    }
    if (result.credential === undefined) return null
    return { credential: result.credential, revoked: result.reason === 'revoked' }
  }

  async function handle (item: LeakItem, ctx: LeakContext): Promise<boolean> {
    const found = await identify(item.token, ctx.requester)
    if (found === null) return false
    const actor: Actor = { type: ActorType.leakReport, id: ctx.actorId, clientIp: ctx.clientIp, requestId: ctx.requestId }
    // Revoked first: the report exists to stop the token, the record can come after.
    if (!found.revoked) await deps.revoke(found.credential, actor)
    await deps.record(eventFrom(EventKind.leakReported, found.credential, actor, {
      tokenType: safeText(item.type, 200),
      url: item.url === undefined ? null : safeText(item.url),
      source: item.source === undefined ? null : safeText(item.source, 200),
      revokedNow: !found.revoked
    }))
    return true
  }

  return {
    async report (items, ctx) {
      // The same string twice in one report is verified (and revoked) once.
      const unique = [...new Map(items.map(i => [i.token, i])).values()]
      const ours = new Map<string, boolean>()
      let next = 0
      let failed = false
      const worker = async (): Promise<void> => {
        while (next < unique.length && !failed) {
          const item = unique[next++] as LeakItem
          try {
            ours.set(item.token, await handle(item, ctx))
          } catch (err) {
            // The caller retries the whole report (GitHub does): what was revoked stays revoked.
            failed = true
            throw err
          }
        }
      }
      await Promise.all(Array.from({ length: Math.min(concurrency, unique.length) }, worker))
      return items.map(i => ({
        token_hash: hash('sha256', i.token, 'hex'),
        token_type: i.type,
        label: ours.get(i.token) === true ? 'true_positive' : 'false_positive'
      }))
    }
  }
}
