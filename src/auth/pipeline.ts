import type { IncomingHttpHeaders } from 'node:http'
import { parseCredential, type CredentialKind, type ParsedCredential } from '../credentials/format.js'
import {
  HG_ERR_AUTH_BUSY, HG_ERR_AUTH_FORBIDDEN, HG_ERR_AUTH_FORBIDDEN_ROUTE, HG_ERR_AUTH_RATE_LIMITED, HG_ERR_CLIENT_GONE,
  HG_ERR_INTERNAL, errorDef, type ErrorDef
} from '../errors.js'
import type { Requester } from './bcrypt-pool.js'
import { extractCredential, type CredentialSource } from './credential-header.js'
import { Reason, REASON_ERROR, type AuthResult, type CredentialRef } from './outcome.js'
import { checkPath } from './path-guard.js'
import type { Policy, PolicyDecision } from './policy.js'
import type { MemoHit } from './memo.js'
import type { Principal } from './principal.js'
import type { FailureLimiter, Gate } from './rate-limit.js'

/** The little a pipeline needs of a request: testable without a server. Never modified. */
export interface PipelineRequest {
  method: string
  url: string
  headers: IncomingHttpHeaders
  rawHeaders: readonly string[]
  ip: string
  /** The client's connection: a bcrypt compare still queued when it closes is dropped. */
  connection?: Requester
}

export interface Pass {
  pass: true
  reason: typeof Reason.ok | typeof Reason.public | typeof Reason.passthrough
  principal: Principal | null
  decision: PolicyDecision
  /** Decoded path the policy matched. */
  path: string
  credentialSource: CredentialSource | null
  kind: CredentialKind | null
  prefix: string | null
}

export interface Refusal {
  pass: false
  reason: Reason
  error: ErrorDef
  kind: CredentialKind | null
  prefix: string | null
  requiredPermission?: string
  retryAfter?: number
  /** What went wrong inside, for the log; never sent to the client. */
  cause?: unknown
  /** The credential refused for its state, its secret verified (the audit trail's use-events). */
  credential?: CredentialRef
}

export type PipelineResult = Pass | Refusal

/** How a PAT is checked: `key` the memo key when the caller computed it; `walk` false forbids walking untagged rows with bcrypt (the prefix is rate-limited). */
export interface PatCheck {
  key?: string
  /** The memo entry the pipeline found under `key` in this same turn: not looked up again. */
  hit?: MemoHit
  walk?: boolean
}

export interface PipelineDeps {
  policy: Policy
  limiter: FailureLimiter
  authenticatePat: (cred: ParsedCredential, requester?: Requester, check?: PatCheck) => Promise<AuthResult>
  authenticateApiKey: (cred: ParsedCredential) => Promise<AuthResult>
  apiKeys: 'validate' | 'passthrough' | 'reject'
  /** The memo: a PAT this process has already verified (a memo hit) is never limited (docs/DESIGN.md §2.2). */
  memo?: { key: (credential: string) => string, verified: (key: string) => MemoHit | undefined }
}

export interface Pipeline {
  /** A promise only when the decision needs I/O (a credential to check); every other outcome is returned at once. */
  run(req: PipelineRequest): PipelineResult | Promise<PipelineResult>
}

/** A credential presented and checked: who it is, or why not. */
export type Authenticated =
  | { ok: true, principal: Principal | null, source: CredentialSource, kind: CredentialKind, prefix: string, passthrough: boolean }
  | Refusal

function refusal (reason: Reason, error: ErrorDef, kind: CredentialKind | null, prefix: string | null): Refusal {
  return { pass: false, reason, error, kind, prefix }
}

/** A thrown store or bcrypt error as the request's answer (docs/DESIGN.md §2 step 4: fail closed). */
function unavailable (cred: ParsedCredential, err: unknown): Refusal {
  const def = errorDef((err as { code?: string }).code ?? '') ?? HG_ERR_INTERNAL
  // Neither is a failure inside: a saturated pool is the contract's 503 (and a
  // metric), a client gone is nobody's answer. Only the others carry a cause to log.
  if (def === HG_ERR_CLIENT_GONE) return refusal(Reason.clientGone, def, cred.kind, cred.prefix)
  if (def === HG_ERR_AUTH_BUSY) return refusal(Reason.unavailable, def, cred.kind, cred.prefix)
  return { ...refusal(Reason.unavailable, def, cred.kind, cred.prefix), cause: err }
}

function rateLimited (seconds: number, kind: CredentialKind | null, prefix: string | null): Refusal {
  return { ...refusal(Reason.rateLimited, HG_ERR_AUTH_RATE_LIMITED, kind, prefix), retryAfter: seconds }
}

/**
 * Stage 2 (docs/DESIGN.md §2 steps 3-5): the client's failure budget, the one
 * credential, its secret and its fresh state. The limiter counts an attempt
 * when it starts, per client address and per prefix, and takes it back when
 * the credential proves good (docs/DESIGN.md §2.2); a 503 from a full bcrypt
 * queue stays counted for the client that caused it. A PAT this process has
 * already verified (a memo hit) is never limited: an attacker sharing a valid
 * user's address cannot lock that user out.
 */
export function authenticate (deps: PipelineDeps, req: PipelineRequest): Authenticated | Promise<Authenticated> {
  const { limiter } = deps
  const ip = req.ip
  /** A failure counted once known: the refusal is answered once the count is in, so the client's next request sees it. */
  const countFailure = (r: Refusal): Refusal | Promise<Refusal> => {
    const pending = limiter.fail(ip)
    return pending === undefined ? r : pending.then(() => r)
  }
  /** Refused before any lookup (nothing to verify): counted, or 429 when the address is already blocked. */
  const early = (reason: Reason, error: ErrorDef, kind: CredentialKind | null, prefix: string | null): Refusal | Promise<Refusal> => {
    const wait = limiter.blocked(ip)
    if (wait > 0) return rateLimited(wait, null, null)
    return countFailure(refusal(reason, error, kind, prefix))
  }

  const found = extractCredential(req.headers, req.rawHeaders)
  if (!found.found) return early(found.reason, REASON_ERROR[found.reason], null, null)
  const cred = parseCredential(found.value)
  if (cred === null) return early(Reason.malformed, REASON_ERROR.malformed, null, null)
  const source = found.source

  if (cred.kind === 'api_key') {
    if (deps.apiKeys === 'reject') return early(Reason.rejected, REASON_ERROR.rejected, cred.kind, cred.prefix)
    if (deps.apiKeys === 'passthrough') {
      const wait = limiter.blocked(ip)
      if (wait > 0) return rateLimited(wait, null, null)
      return { ok: true, principal: null, source, kind: cred.kind, prefix: cred.prefix, passthrough: true }
    }
  }

  const settle = (pending: Promise<AuthResult>, counted: boolean, prefixWait: number): Promise<Authenticated> => pending.then(
    (result): Authenticated | Promise<Authenticated> => {
      if (result.ok) {
        if (counted) limiter.refund(ip, cred.prefix)
        return { ok: true, principal: result.principal, source, kind: cred.kind, prefix: cred.prefix, passthrough: false }
      }
      if (result.reason === Reason.rateLimited) return rateLimited(prefixWait, cred.kind, cred.prefix)
      const r = refusal(result.reason, result.error, cred.kind, cred.prefix)
      if (result.credential !== undefined) r.credential = result.credential
      return cred.kind === 'api_key' ? countFailure(r) : r
    },
    (err: unknown) => {
      const r = unavailable(cred, err)
      // A saturated pool counts for the client that filled it; a client gone, too. A failing store is nobody's fault.
      if (counted && r.reason === Reason.unavailable && r.error !== HG_ERR_AUTH_BUSY) limiter.refund(ip, cred.prefix)
      return r
    }
  )
  const start = (counted: boolean, check: PatCheck, prefixWait: number): Authenticated | Promise<Authenticated> => {
    try {
      return settle(cred.kind === 'pat' ? deps.authenticatePat(cred, req.connection, check) : deps.authenticateApiKey(cred), counted, prefixWait)
    } catch (err) {
      if (counted) limiter.refund(ip, cred.prefix)
      return unavailable(cred, err)
    }
  }

  if (cred.kind === 'api_key') {
    // No bcrypt behind an API key (a SHA-256 and one indexed row): nothing to
    // bound at the start, so a failure is counted once known, as a malformed
    // credential's, and a valid key costs the limiter no round trip.
    const wait = limiter.blocked(ip)
    if (wait > 0) return rateLimited(wait, cred.kind, cred.prefix)
    return start(false, {}, 0)
  }
  let key: string | undefined
  if (cred.kind === 'pat' && deps.memo !== undefined) {
    key = deps.memo.key(cred.value)
    const hit = deps.memo.verified(key)
    if (hit !== undefined) return start(false, { key, hit }, 0)
  }
  if (!limiter.enabled) return start(false, { key }, 0)
  const gated = (gate: Gate): Authenticated | Promise<Authenticated> =>
    gate.client > 0 ? rateLimited(gate.client, cred.kind, cred.prefix) : start(true, { key, walk: gate.prefix === 0 }, gate.prefix)
  const gate = limiter.begin(ip, cred.prefix)
  return gate instanceof Promise ? gate.then(gated) : gated(gate)
}

/** Stage 3 (docs/DESIGN.md §2 steps 6-7): the route's permission against the principal's effective ones. */
export function authorize (decision: PolicyDecision, principal: Principal, kind: CredentialKind, prefix: string): Refusal | null {
  if (decision.deny) return refusal(Reason.forbidden, HG_ERR_AUTH_FORBIDDEN_ROUTE, kind, prefix)
  if (decision.permission !== null && !principal.permissions.includes(decision.permission)) {
    return { ...refusal(Reason.forbidden, HG_ERR_AUTH_FORBIDDEN, kind, prefix), requiredPermission: decision.permission }
  }
  return null
}

/**
 * Stage 1 (docs/DESIGN.md §2 steps 1 and 7): the path guard, then the route's
 * policy on the decoded path. null: a path the upstream could read otherwise (400).
 */
export function routeOf (policy: Policy, method: string, rawUrl: string): { path: string, decision: PolicyDecision } | null {
  const checked = checkPath(rawUrl)
  if (!checked.ok) return null
  return { path: checked.path, decision: policy.decide(method, checked.path) }
}

/**
 * The access pipeline (docs/DESIGN.md §2): stage 1 the path guard and the route's
 * policy, stage 2 authenticate, stage 3 authorize. The identity headers of a
 * pass are built by identity-headers.ts for the proxy.
 */
export function createPipeline (deps: PipelineDeps): Pipeline {
  const { policy } = deps

  function decided (a: Authenticated, decision: PolicyDecision, path: string): PipelineResult {
    if (!('ok' in a)) return a
    if (a.passthrough) {
      return { pass: true, reason: Reason.passthrough, principal: null, decision, path, credentialSource: a.source, kind: a.kind, prefix: a.prefix }
    }
    const principal = a.principal as Principal
    const refused = authorize(decision, principal, a.kind, a.prefix)
    if (refused !== null) return refused
    return { pass: true, reason: Reason.ok, principal, decision, path, credentialSource: a.source, kind: a.kind, prefix: a.prefix }
  }

  return {
    run (req) {
      const route = routeOf(policy, req.method, req.url)
      if (route === null) return refusal(Reason.badRequest, REASON_ERROR.bad_request, null, null)
      const { path, decision } = route
      if (decision.public) {
        return { pass: true, reason: Reason.public, principal: null, decision, path, credentialSource: null, kind: null, prefix: null }
      }
      const a = authenticate(deps, req)
      return a instanceof Promise ? a.then(r => decided(r, decision, path)) : decided(a, decision, path)
    }
  }
}
