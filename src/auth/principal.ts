import type { Role } from '../config/schema.js'
import type { CredentialKind } from '../credentials/format.js'

export interface Principal {
  type: CredentialKind
  credentialId: string
  prefix: string
  userId: string | null
  orgId: string
  role: string
  /** Effective permissions, sorted. */
  permissions: readonly string[]
  /** `permissions` joined with ",": the header value, computed once per role and subset. */
  permissionsHeader: string
  /** ISO 8601 (UTC, milliseconds): the x-hg-token-expires value; null for no expiry. */
  expiresAt: string | null
}

export interface RoleTable {
  /** Lowest first. */
  readonly order: readonly string[]
  readonly known: ReadonlySet<string>
  has(role: string): boolean
  permissionsOf(role: string): ReadonlySet<string>
  /** rank(a) <= rank(b) means a is no higher than b; -1 for an unknown role. */
  rank(role: string): number
  /** role permissions intersected with the subset (when there is one), sorted, with the header string. */
  effective(role: string, subset: readonly string[] | null): { list: readonly string[], header: string }
}

export function createRoleTable (roles: readonly Role[]): RoleTable {
  const perms = new Map(roles.map(r => [r.name, new Set(r.permissions)]))
  const order = roles.map(r => r.name)
  const known = new Set(roles.flatMap(r => r.permissions))
  const memo = new Map<string, { list: readonly string[], header: string }>()
  const empty = new Set<string>()
  return {
    order,
    known,
    has: role => perms.has(role),
    permissionsOf: role => perms.get(role) ?? empty,
    rank: role => order.indexOf(role),
    effective (role, subset) {
      const key = subset === null ? role : `${role}\u0000${subset.join(',')}`
      let e = memo.get(key)
      if (e === undefined) {
        const granted = perms.get(role) ?? empty
        const list = (subset === null ? [...granted] : subset.filter(p => granted.has(p)))
        const sorted = [...new Set(list)].sort()
        e = { list: sorted, header: sorted.join(',') }
        // Bounded: roles x distinct subsets in use; cap it all the same.
        if (memo.size > 10_000) memo.clear()
        memo.set(key, e)
      }
      return e
    }
  }
}
