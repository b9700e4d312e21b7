import type { ParsedCredential } from '../../credentials/format.js'
import type { Batcher } from '../../store/batcher.js'
import type { Candidate, PrefixCache } from '../../store/prefix-cache.js'
import type { PatState } from '../../store/queries.js'
import { HG_ERR_AUTH_BUSY } from '../../errors.js'
import { isGone, type BcryptPool, type Requester } from '../bcrypt-pool.js'
import type { Memo } from '../memo.js'
import { fail, Reason, refuseKnown, type AuthResult } from '../outcome.js'
import type { RoleTable } from '../principal.js'
import { createSingleFlight } from '../single-flight.js'

export interface PatAuthenticatorDeps {
  memo: Memo
  bcrypt: BcryptPool
  cache: PrefixCache
  /** Candidates straight from PostgreSQL. */
  loadCandidates: (prefix: string) => Promise<Candidate[]>
  /** Fresh state, batched per event-loop turn. */
  states: Batcher<string, PatState>
  roles: RoleTable
  onMemo?: (result: 'hit' | 'miss' | 'stale') => void
  /** A request waited for a verification another request (or a refresh) had started. */
  onShared?: () => void
  /** How a background re-verification of a memo entry ended (refresh ahead). */
  onRefresh?: (result: RefreshResult) => void
}

/**
 * renewed: matched, the entry starts a new lifetime; failed: no longer
 * matches, entry dropped; dropped: the background lane was full (a later hit
 * tries again); error: the store or the pool failed.
 */
export type RefreshResult = 'renewed' | 'failed' | 'dropped' | 'error'

type SecretMatch = Candidate | typeof Reason.unknown | typeof Reason.badSecret

/**
 * docs/DESIGN.md §2 steps 4-6 for personal access tokens. Throws only the store's and
 * the bcrypt pool's errors (503s, and HG_ERR_CLIENT_GONE when the requester
 * left while its compare waited); every other outcome is a result.
 */
export function createPatAuthenticator (deps: PatAuthenticatorDeps): (cred: ParsedCredential, requester?: Requester) => Promise<AuthResult> {
  const { memo, bcrypt, cache, roles, states } = deps
  const onMemo = deps.onMemo ?? (() => {})
  const onRefresh = deps.onRefresh ?? (() => {})
  const flights = createSingleFlight<SecretMatch>({ promote: work => bcrypt.promote(work), onShared: deps.onShared })

  async function firstMatch (secret: string, list: readonly Candidate[], skip: ReadonlySet<string>, requester: Requester | undefined): Promise<Candidate | null> {
    for (const c of list) {
      if (skip.has(c.id)) continue
      if (await bcrypt.compare(secret, c.hash, requester)) return c
    }
    return null
  }

  async function verifySecret (cred: ParsedCredential, requester: Requester | undefined): Promise<SecretMatch> {
    const cached = await cache.get(cred.prefix)
    let list = cached
    if (list === null) {
      list = await deps.loadCandidates(cred.prefix)
      void cache.set(cred.prefix, list)
    }
    const match = await firstMatch(cred.value, list, new Set(), requester)
    if (match !== null) return match
    let any = list.length > 0
    if (cached !== null) {
      // The cached list may predate a token minted since: ask PostgreSQL once.
      const fresh = await deps.loadCandidates(cred.prefix)
      void cache.set(cred.prefix, fresh)
      const again = await firstMatch(cred.value, fresh, new Set(list.map(c => c.id)), requester)
      if (again !== null) return again
      any = fresh.length > 0
    }
    return any ? Reason.badSecret : Reason.unknown
  }

  function known (reason: 'revoked' | 'expired' | 'suspended' | 'not_member', state: PatState): AuthResult {
    return refuseKnown(reason, { type: 'pat', id: state.id, prefix: state.prefix, orgId: state.orgId, userId: state.userId })
  }

  /** verifySecret once per credential at a time (issue 23); the memo learns its answer. */
  async function verify (cred: ParsedCredential, key: string, as: Requester): Promise<SecretMatch> {
    const match = await verifySecret(cred, as)
    if (typeof match === 'string') {
      memo.delete(key)
      memo.setNegative(key)
    } else {
      memo.set(key, match)
    }
    return match
  }

  /**
   * Refresh ahead: a hit late in its entry's life re-verifies it in the
   * background while the entry keeps answering, so entries in use never
   * expire under their requests. Safe because every hit is checked against the
   * stored hash and the fresh state anyway.
   */
  function refresh (cred: ParsedCredential, key: string): void {
    if (flights.has(key)) return
    if (!bcrypt.backgroundAvailable) {
      onRefresh('dropped')
      return
    }
    flights.background(key, as => verify(cred, key, as))?.then(
      match => onRefresh(typeof match === 'string' ? 'failed' : 'renewed'),
      (err: unknown) => onRefresh((err as { code?: unknown }).code === HG_ERR_AUTH_BUSY.code ? 'dropped' : 'error')
    )
  }

  function decide (state: PatState): AuthResult {
    if (state.revoked) return known(Reason.revoked, state)
    if (state.userStatus !== 'active') return known(Reason.suspended, state)
    if (state.role === null) return known(Reason.notMember, state)
    if (state.expired) return known(Reason.expired, state)
    const eff = roles.effective(state.role, state.permissions)
    return {
      ok: true,
      principal: {
        type: 'pat',
        credentialId: state.id,
        prefix: state.prefix,
        userId: state.userId,
        orgId: state.orgId,
        role: state.role,
        permissions: eff.list,
        permissionsHeader: eff.header,
        expiresAt: state.expiresAt
      }
    }
  }

  return async function authenticatePat (cred, requester) {
    const key = memo.key(cred.value)
    if (memo.isNegative(key)) return fail(Reason.badSecret)
    if (memo.enabled) {
      const hit = memo.get(key)
      if (hit !== undefined) {
        const state = await states.load(hit.id)
        if (state !== undefined && state.secretHash === hit.hash) {
          onMemo('hit')
          const result = decide(state)
          if (result.ok && memo.refreshDue(hit) && memo.get(key) === hit) refresh(cred, key)
          return result
        }
        onMemo('stale')
        memo.delete(key)
      } else {
        onMemo('miss')
      }
    }
    const match = await flights.run(key, requester, as => verify(cred, key, as))
    if (typeof match === 'string') return fail(match)
    // A compare takes tens of milliseconds: a client that left meanwhile needs no state
    // read (and on shutdown the pool may already be closed under it).
    if (isGone(requester)) return fail(Reason.clientGone)
    const state = await states.load(match.id)
    if (state === undefined || state.secretHash !== match.hash) return fail(Reason.unknown)
    return decide(state)
  }
}
