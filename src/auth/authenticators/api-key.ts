import { hash } from 'node:crypto'
import type { ParsedCredential } from '../../credentials/format.js'
import type { Batcher } from '../../store/batcher.js'
import type { ApiKeyState } from '../../store/queries.js'
import { fail, Reason, refuseKnown, type AuthResult } from '../outcome.js'
import type { RoleTable } from '../principal.js'

export interface ApiKeyAuthenticatorDeps {
  /** Fresh state by hex SHA-256, batched per event-loop turn. */
  states: Batcher<string, ApiKeyState>
  roles: RoleTable
}

/** docs/DESIGN.md §2 step 4 for API keys: SHA-256, one fresh indexed lookup, no bcrypt. */
export function createApiKeyAuthenticator (deps: ApiKeyAuthenticatorDeps): (cred: ParsedCredential) => Promise<AuthResult> {
  return async function authenticateApiKey (cred) {
    // One-shot digest straight to hex (the batch key): no Hash object, no Buffer.
    const state = await deps.states.load(hash('sha256', cred.value, 'hex'))
    if (state === undefined) return fail(Reason.unknown)
    if (state.revoked || state.expired) {
      const ref = { type: 'api_key', id: state.id, prefix: state.prefix, orgId: state.orgId, userId: null } as const
      return refuseKnown(state.revoked ? Reason.revoked : Reason.expired, ref)
    }
    const eff = deps.roles.effective(state.role, state.permissions)
    return {
      ok: true,
      principal: {
        type: 'api_key',
        credentialId: state.id,
        prefix: state.prefix,
        userId: null,
        orgId: state.orgId,
        role: state.role,
        permissions: eff.list,
        permissionsHeader: eff.header,
        expiresAt: state.expiresAt
      }
    }
  }
}
