import type { Config, Route } from '../config/schema.js'

export interface PolicyDecision {
  /** No credential needed. */
  public: boolean
  /** The permission the request needs, null for none. */
  permission: string | null
  /** defaultDeny matched: no credential can pass. */
  deny: boolean
  /** The upstream origin for this request; null = the default UPSTREAM_URL. */
  upstream: string | null
  /** Answered by the sidecar itself (self-service API): authenticated, never forwarded. */
  local: boolean
}

const NON_ASCII = /[^\p{ASCII}]/u

/**
 * The path as the policy compares it: lower case, and for non-ASCII text the
 * upper-then-lower fold, so that letters a Unicode-aware case-insensitive
 * router folds onto ASCII (`ſ` -> s, the Kelvin sign -> k, dotless `ı` -> i)
 * meet the prefix they would reach upstream.
 */
export function foldPath (path: string): string {
  const lower = path.toLowerCase()
  return !NON_ASCII.test(lower) ? lower : path.toUpperCase().toLowerCase()
}

/**
 * Segment-aware and suffix-covering (docs/DESIGN.md §2 step 1): `/api/scans`
 * covers `/api/scans`, `/api/scans/...` and `/api/scans.json` (a format suffix
 * that Rails and Spring strip), not `/api/scansX`. Both sides already folded.
 */
function underPrefix (path: string, prefix: string): boolean {
  if (prefix === '/') return true
  if (!path.startsWith(prefix)) return false
  const next = path.charCodeAt(prefix.length)
  return Number.isNaN(next) || next === 47 /* / */ || next === 46 /* . */
}

export interface Policy {
  decide(method: string, path: string): PolicyDecision
  /** Distinct upstream origins the routes name. */
  readonly upstreams: readonly string[]
}

/**
 * docs/DESIGN.md §2 step 7: first matching route, then its first matching rule.
 * Prefixes match case-insensitively and cover a format suffix (step 1), so no
 * spelling a lenient upstream router accepts reaches a route without its rule.
 */
export function createPolicy (config: Pick<Config, 'routes' | 'defaultDeny'>, localPrefixes: readonly string[] = []): Policy {
  const routes: readonly Route[] = config.routes.map(r => ({
    ...r,
    prefix: foldPath(r.prefix),
    ...(r.rules === undefined ? {} : { rules: r.rules.map(rule => rule.prefix === undefined ? rule : { ...rule, prefix: foldPath(rule.prefix) }) })
  }))
  const locals = localPrefixes.map(foldPath)
  const open: PolicyDecision = { public: false, permission: null, deny: false, upstream: null, local: false }
  const denied: PolicyDecision = { public: false, permission: null, deny: true, upstream: null, local: false }
  const local: PolicyDecision = { public: false, permission: null, deny: false, upstream: null, local: true }
  return {
    upstreams: [...new Set(routes.flatMap(r => r.upstream === undefined ? [] : [r.upstream]))],
    decide (method, decodedPath) {
      const path = foldPath(decodedPath)
      for (const prefix of locals) if (underPrefix(path, prefix)) return local
      for (const route of routes) {
        if (!underPrefix(path, route.prefix)) continue
        const upstream = route.upstream ?? null
        if (route.public === true) return { public: true, permission: null, deny: false, upstream, local: false }
        const rules = route.rules ?? []
        if (rules.length === 0) return { ...open, upstream }
        for (const rule of rules) {
          if (rule.methods !== undefined && !(rule.methods as string[]).includes(method)) continue
          if (rule.prefix !== undefined && !underPrefix(path, rule.prefix)) continue
          return { public: rule.public === true, permission: rule.permission ?? null, deny: false, upstream, local: false }
        }
        return config.defaultDeny ? { ...denied, upstream } : { ...open, upstream }
      }
      return config.defaultDeny ? denied : open
    }
  }
}
