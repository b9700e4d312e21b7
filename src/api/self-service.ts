import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { ActorType, safeJson, type Actor } from '../audit/events.js'
import type { Principal } from '../auth/principal.js'
import type { CredentialService, PatView } from '../management/service.js'
import { HG_ERR_AUTH_INVALID, HG_ERR_MGMT_NOT_FOUND, HG_ERR_MGMT_PAT_ONLY, HG_ERR_MGMT_PAT_REVOKE_PAT_ONLY } from '../errors.js'
import { sendError, sendForbidden, sendMethodNotAllowed } from '../http/reply.js'

/** Answered by the sidecar itself on the proxy port, never forwarded (docs/DESIGN.md §5). */
export const SELF_SERVICE_PREFIXES = ['/api/personal-access-tokens', '/api/api-keys'] as const

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const ALL_METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const

/** Stored names may predate the character check: bidi and control characters go out as \uXXXX (the same JSON value). */
function json (reply: FastifyReply, body: unknown): FastifyReply {
  return reply.code(200).header('content-type', 'application/json; charset=utf-8').send(safeJson(body))
}

function principalOf (request: FastifyRequest): Principal | null {
  return request.hg?.principal ?? null
}

/** The audit trail's actor: the credential that authenticated the call (and its user, for a PAT). */
function selfActor (request: FastifyRequest, p: Principal): Actor {
  return {
    type: ActorType.selfService,
    id: p.credentialId,
    clientIp: request.ip,
    requestId: request.id,
    detail: { actorCredentialType: p.type, actorUserId: p.userId }
  }
}

function notFound (reply: FastifyReply): FastifyReply {
  return sendError(reply, HG_ERR_MGMT_NOT_FOUND)
}

/** The list shape of a PAT: never a hash, never a secret. */
function patListItem (r: PatView): Record<string, unknown> {
  return {
    id: r.id,
    name: r.name,
    prefix: r.prefix,
    permissions: r.permissions,
    createdAt: r.createdAt,
    expiresAt: r.expiresAt,
    lastUsedAt: r.lastUsedAt,
    revokedAt: r.revokedAt,
    revoked: r.revokedAt !== null
  }
}

export interface SelfServiceOptions {
  service: CredentialService
}

/** GET/DELETE of the caller's own PATs and, with api-keys:manage, of the org's API keys. */
export function registerSelfService (app: FastifyInstance, { service }: SelfServiceOptions): void {
  app.get('/api/personal-access-tokens', async (request, reply) => {
    const p = principalOf(request)
    if (p === null) return sendError(reply, HG_ERR_AUTH_INVALID)
    if (p.userId === null) return sendError(reply, HG_ERR_MGMT_PAT_ONLY)
    const rows = await service.listPats(p.userId, p.orgId)
    return json(reply, rows.map(patListItem))
  })

  app.delete<{ Params: { id: string } }>('/api/personal-access-tokens/:id', async (request, reply) => {
    const p = principalOf(request)
    if (p === null) return sendError(reply, HG_ERR_AUTH_INVALID)
    // A route for a PAT's user (docs/DESIGN.md §5): an API key, whatever its role, is
    // no user, and tokens:manage on a key must not reach other people's tokens.
    // Refused before the id is looked at: no existence oracle either.
    if (p.userId === null) return sendError(reply, HG_ERR_MGMT_PAT_REVOKE_PAT_ONLY)
    const { id } = request.params
    if (!UUID.test(id)) return notFound(reply)
    const tok = await service.getPat(id)
    // Someone else's token without tokens:manage, or another org's: 404, not 403 (existence is not revealed).
    const own = tok !== null && tok.userId === p.userId
    if (tok === null || tok.orgId !== p.orgId || !(own || p.permissions.includes('tokens:manage'))) return notFound(reply)
    await service.revokePat(id, selfActor(request, p))
    return reply.code(204).send()
  })

  app.get('/api/api-keys', async (request, reply) => {
    const p = principalOf(request)
    if (p === null) return sendError(reply, HG_ERR_AUTH_INVALID)
    if (!p.permissions.includes('api-keys:manage')) return sendForbidden(reply, 'api-keys:manage')
    const rows = await service.listApiKeys(p.orgId)
    return json(reply, rows.map(r => ({ ...r, revoked: r.revokedAt !== null })))
  })

  app.delete<{ Params: { id: string } }>('/api/api-keys/:id', async (request, reply) => {
    const p = principalOf(request)
    if (p === null) return sendError(reply, HG_ERR_AUTH_INVALID)
    if (!p.permissions.includes('api-keys:manage')) return sendForbidden(reply, 'api-keys:manage')
    const { id } = request.params
    if (!UUID.test(id)) return notFound(reply)
    const key = await service.getApiKey(id)
    if (key === null || key.orgId !== p.orgId) return notFound(reply)
    await service.revokeApiKey(id, selfActor(request, p))
    return reply.code(204).send()
  })

  // Anything else under these prefixes is the sidecar's too: never forwarded.
  for (const prefix of SELF_SERVICE_PREFIXES) {
    app.route({ method: ALL_METHODS.filter(m => m !== 'GET'), url: prefix, handler: async (_req, reply) => sendMethodNotAllowed(reply, ['GET', 'HEAD']) })
    app.route({ method: ALL_METHODS.filter(m => m !== 'DELETE'), url: `${prefix}/:id`, handler: async (_req, reply) => sendMethodNotAllowed(reply, ['DELETE']) })
    app.route({ method: [...ALL_METHODS, 'HEAD'], url: `${prefix}/:id/*`, handler: async (_req, reply) => notFound(reply) })
  }
}
