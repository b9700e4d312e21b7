import { lookupTag, type ParsedCredential } from '../../credentials/format.js'
import type { Batcher } from '../../store/batcher.js'
import type { Candidate, PrefixCache, PrefixEntry } from '../../store/prefix-cache.js'
import type { PatState } from '../../store/queries.js'
import { HG_ERR_AUTH_BUSY } from '../../errors.js'
import { isGone, type BcryptPool, type Requester } from '../bcrypt-pool.js'
import type { Memo } from '../memo.js'
import { fail, Reason, refuseKnown, type AuthResult } from '../outcome.js'
import type { RoleTable } from '../principal.js'
import type { PatCheck } from '../pipeline.js'
import { createSingleFlight } from '../single-flight.js'

export interface PatAuthenticatorDeps {
  memo: Memo
  bcrypt: BcryptPool
  cache: PrefixCache
  /** A prefix's untagged rows and whether it has tagged ones, straight from PostgreSQL. */
  loadPrefix: (prefix: string) => Promise<PrefixEntry>
  /** A lookup tag's rows from PostgreSQL, batched per event-loop turn (undefined: none). */
  tagged: Batcher<string, Candidate[]>
  /** Writes the tag of an untagged row that just verified (docs/DESIGN.md §2 step 4). */
  tagRow: (id: string, tag: string) => Promise<void>
  /** A failed tag write: logged by the caller (the row stays untagged, walked by prefix). */
  onTagError?: (err: unknown) => void
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

type SecretMatch = Candidate | typeof Reason.unknown | typeof Reason.badSecret | typeof Reason.rateLimited

/**
 * docs/DESIGN.md §2 steps 4-6 for personal access tokens. Throws only the store's and
 * the bcrypt pool's errors (503s, and HG_ERR_CLIENT_GONE when the requester
 * left while its compare waited); every other outcome is a result.
 */
export function createPatAuthenticator (deps: PatAuthenticatorDeps): (cred: ParsedCredential, requester?: Requester, check?: PatCheck) => Promise<AuthResult> {
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

  /** The prefix's entry: the cache, else PostgreSQL (then cached; an unknown prefix too, briefly). */
  async function prefixEntry (prefix: string): Promise<{ entry: PrefixEntry, cached: boolean }> {
    const cached = await cache.getPrefix(prefix)
    if (cached !== null) return { entry: cached, cached: true }
    const entry = await deps.loadPrefix(prefix)
    void cache.setPrefix(prefix, entry)
    return { entry, cached: false }
  }

  /**
   * The rows with this lookup tag: one indexed query, batched per event-loop
   * turn, never cached (like an API key's SHA-256 lookup). A tag no row has is
   * a function of the whole credential: the negative memo answers its repeats.
   */
  async function tagCandidates (tag: string): Promise<Candidate[]> {
    return await deps.tagged.load(tag) ?? []
  }

  const tagging = new Set<string>()
  /** An untagged row verified: write its tag once, then drop the cached entries that still list it as untagged. */
  function tagLater (c: Candidate, prefix: string, tag: string): void {
    if (tagging.has(c.id)) return
    tagging.add(c.id)
    deps.tagRow(c.id, tag).then(
      async () => { await cache.invalidate(prefix) },
      (err: unknown) => { deps.onTagError?.(err) }
    ).finally(() => tagging.delete(c.id))
  }

  /**
   * docs/DESIGN.md §2 step 4 and §2.2: the row with the credential's lookup tag
   * (one compare for a valid PAT; none for a wrong secret, whose tag no row has),
   * then the prefix's untagged rows, walked as before and tagged on their first
   * match. Nothing of a prefix without rows, or of a tag without rows, reaches
   * PostgreSQL twice within the negative TTL.
   */
  async function verifySecret (cred: ParsedCredential, requester: Requester | undefined, walk: boolean): Promise<SecretMatch> {
    const tag = lookupTag(cred.value)
    const { entry, cached } = await prefixEntry(cred.prefix)
    const skip = new Set<string>()
    if (entry.tagged) {
      const match = await firstMatch(cred.value, await tagCandidates(tag), skip, requester)
      if (match !== null) return match
    }
    if (entry.untagged.length === 0) return entry.tagged ? Reason.badSecret : Reason.unknown
    if (!walk) return Reason.rateLimited
    const match = await firstMatch(cred.value, entry.untagged, skip, requester)
    if (match !== null) {
      tagLater(match, cred.prefix, tag)
      return match
    }
    if (cached) {
      // A cached list of untagged rows may predate a row imported since: ask PostgreSQL once.
      // (Empty entries are not rechecked: that would be a query per unknown credential.)
      for (const c of entry.untagged) skip.add(c.id)
      const fresh = await deps.loadPrefix(cred.prefix)
      void cache.setPrefix(cred.prefix, fresh)
      if (fresh.tagged && !entry.tagged) {
        const again = await firstMatch(cred.value, await tagCandidates(tag), skip, requester)
        if (again !== null) return again
      }
      const again = await firstMatch(cred.value, fresh.untagged, skip, requester)
      if (again !== null) {
        tagLater(again, cred.prefix, tag)
        return again
      }
    }
    return Reason.badSecret
  }

  function known (reason: 'revoked' | 'expired' | 'suspended' | 'not_member', state: PatState): AuthResult {
    return refuseKnown(reason, { type: 'pat', id: state.id, prefix: state.prefix, orgId: state.orgId, userId: state.userId })
  }

  /** verifySecret once per credential at a time (issue 23); the memo learns its answer. */
  async function verify (cred: ParsedCredential, key: string, as: Requester, walk = true): Promise<SecretMatch> {
    const match = await verifySecret(cred, as, walk)
    if (match === Reason.rateLimited) return match
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

  return async function authenticatePat (cred, requester, check: PatCheck = {}) {
    const key = check.key ?? memo.key(cred.value)
    if (memo.isNegative(key)) return fail(Reason.badSecret)
    if (memo.enabled) {
      const hit = check.hit ?? memo.get(key)
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
    const match = await flights.run(key, requester, as => verify(cred, key, as, check.walk ?? true))
    if (typeof match === 'string') return fail(match)
    // A compare takes tens of milliseconds: a client that left meanwhile needs no state
    // read (and on shutdown the pool may already be closed under it).
    if (isGone(requester)) return fail(Reason.clientGone)
    const state = await states.load(match.id)
    if (state === undefined || state.secretHash !== match.hash) return fail(Reason.unknown)
    return decide(state)
  }
}
