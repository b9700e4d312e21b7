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

function underPrefix (path: string, prefix: string): boolean {
  if (prefix === '/') return true
  return path === prefix || (path.startsWith(prefix) && path.charCodeAt(prefix.length) === 47)
}

export interface Policy {
  decide(method: string, path: string): PolicyDecision
  /** Distinct upstream origins the routes name. */
  readonly upstreams: readonly string[]
}

/** docs/DESIGN.md §2 step 7: first matching route (segment-aware prefix), then its first matching rule. */
export function createPolicy (config: Pick<Config, 'routes' | 'defaultDeny'>, localPrefixes: readonly string[] = []): Policy {
  const routes: readonly Route[] = config.routes
  const open: PolicyDecision = { public: false, permission: null, deny: false, upstream: null, local: false }
  const denied: PolicyDecision = { public: false, permission: null, deny: true, upstream: null, local: false }
  const local: PolicyDecision = { public: false, permission: null, deny: false, upstream: null, local: true }
  return {
    upstreams: [...new Set(routes.flatMap(r => r.upstream === undefined ? [] : [r.upstream]))],
    decide (method, path) {
      for (const prefix of localPrefixes) if (underPrefix(path, prefix)) return local
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
