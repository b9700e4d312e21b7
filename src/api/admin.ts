import { createHash, randomUUID, timingSafeEqual } from 'node:crypto'
import swagger from '@fastify/swagger'
import { Type, type Static } from '@sinclair/typebox'
import Fastify, { type FastifyInstance } from 'fastify'
import { saneRequestId } from '../http/request-id.js'
import type { CredentialService } from '../management/service.js'
import { HG_ERR_ADMIN_UNAUTHORIZED, HG_ERR_NOT_FOUND, hgError } from '../errors.js'
import { internalFastifyOptions } from '../http/options.js'
import { errorHandler, sendError } from '../http/reply.js'
import type { Logger } from '../logger.js'
import { ActorHeadersSchema, adminActor, registerAuditRoutes, type AuditRoutesOptions } from './admin-audit.js'

const Uuid = Type.String({ format: 'uuid' })
const Iso = Type.String({ format: 'date-time' })
const Nullable = <T extends ReturnType<typeof Type.String>>(t: T) => Type.Union([t, Type.Null()])
const Permissions = Type.Array(Type.String({ maxLength: 64 }), { maxItems: 64 })

const Expiry = {
  expiresAt: Type.Optional(Iso),
  expiresInDays: Type.Optional(Type.Integer({ minimum: 1 })),
  noExpiry: Type.Optional(Type.Boolean())
}

export const CreatePatBodySchema = Type.Object({
  userId: Uuid,
  orgId: Uuid,
  name: Type.String({ minLength: 1, maxLength: 100 }),
  permissions: Type.Optional(Permissions),
  ...Expiry
}, { additionalProperties: false })
export type CreatePatBody = Static<typeof CreatePatBodySchema>

export const CreateApiKeyBodySchema = Type.Object({
  orgId: Uuid,
  createdBy: Uuid,
  name: Type.String({ minLength: 1, maxLength: 100 }),
  role: Type.String({ minLength: 1, maxLength: 32 }),
  permissions: Type.Optional(Permissions),
  ...Expiry
}, { additionalProperties: false })
export type CreateApiKeyBody = Static<typeof CreateApiKeyBodySchema>

const CreatedSchema = Type.Object({
  id: Uuid,
  token: Type.String({ description: 'The secret: returned this once, never stored' }),
  prefix: Type.String(),
  name: Type.String(),
  expiresAt: Nullable(Iso),
  permissions: Type.Union([Permissions, Type.Null()]),
  role: Type.Optional(Type.String()),
  warnings: Type.Array(Type.String())
})

const PatSchema = Type.Object({
  id: Uuid,
  name: Type.String(),
  prefix: Type.String(),
  userId: Uuid,
  orgId: Uuid,
  permissions: Type.Union([Permissions, Type.Null()]),
  createdAt: Iso,
  expiresAt: Nullable(Iso),
  lastUsedAt: Nullable(Iso),
  revokedAt: Nullable(Iso)
})

const ApiKeySchema = Type.Object({
  id: Uuid,
  name: Type.String(),
  prefix: Type.String(),
  orgId: Uuid,
  createdBy: Nullable(Uuid),
  role: Type.String(),
  permissions: Type.Union([Permissions, Type.Null()]),
  createdAt: Iso,
  expiresAt: Nullable(Iso),
  lastUsedAt: Nullable(Iso),
  revokedAt: Nullable(Iso)
})

const ErrorSchema = Type.Object({ error: Type.String(), message: Type.String() })
const IdParams = Type.Object({ id: Uuid })

function digest (s: string): Buffer {
  return createHash('sha256').update(s).digest()
}

export interface AdminOptions {
  log: Logger
  service: CredentialService
  /** When set, required as `Authorization: Bearer <token>` on every admin route. */
  adminToken: string | null
  /** The audit trail and leak-report routes (docs/DESIGN.md §10). */
  audit?: AuditRoutesOptions
}

/** The admin API (docs/DESIGN.md §5): what the Settings page calls; bound to 127.0.0.1 by default. */
export async function buildAdminApp (opts: AdminOptions): Promise<FastifyInstance> {
  const app: FastifyInstance = Fastify({
    ...internalFastifyOptions(opts.log),
    // The caller's X-Request-Id when sane: the audit trail records it.
    genReqId: req => saneRequestId(req.headers['x-request-id']) ?? randomUUID(),
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false } }
  })
  app.setErrorHandler(errorHandler)
  app.setNotFoundHandler((_req, reply) => sendError(reply, HG_ERR_NOT_FOUND))

  const expected = opts.adminToken === null ? null : digest(opts.adminToken)
  if (expected !== null) {
    app.addHook('onRequest', async request => {
      const auth = request.headers.authorization ?? ''
      const given = auth.toLowerCase().startsWith('bearer ') ? auth.slice(7).trim() : ''
      // Digests of equal length: timingSafeEqual leaks neither the content nor the length.
      if (given === '' || !timingSafeEqual(digest(given), expected)) throw hgError(HG_ERR_ADMIN_UNAUTHORIZED)
    })
  }

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: 'hg-auth-sidecar admin API', version: '1' },
      components: expected === null ? {} : { securitySchemes: { adminToken: { type: 'http', scheme: 'bearer' } } },
      security: expected === null ? [] : [{ adminToken: [] }]
    }
  })

  const errors = { 400: ErrorSchema, 401: ErrorSchema, 404: ErrorSchema, 503: ErrorSchema }

  app.post<{ Body: CreatePatBody }>('/admin/personal-access-tokens', {
    schema: { summary: 'Create a personal access token; the secret is returned once', headers: ActorHeadersSchema, body: CreatePatBodySchema, response: { 201: CreatedSchema, ...errors } }
  }, async (request, reply) => {
    const created = await opts.service.createPat(request.body, adminActor(request))
    return reply.code(201).send(created)
  })

  app.get<{ Querystring: { userId: string, orgId?: string } }>('/admin/personal-access-tokens', {
    schema: { summary: "List a user's tokens (never the secrets)", querystring: Type.Object({ userId: Uuid, orgId: Type.Optional(Uuid) }), response: { 200: Type.Array(PatSchema), ...errors } }
  }, async request => opts.service.listPats(request.query.userId, request.query.orgId ?? null))

  app.delete<{ Params: { id: string } }>('/admin/personal-access-tokens/:id', {
    schema: { summary: 'Revoke a token at once, on every replica', headers: ActorHeadersSchema, params: IdParams, response: { 204: Type.Null(), ...errors } }
  }, async (request, reply) => {
    await opts.service.revokePat(request.params.id, adminActor(request))
    return reply.code(204).send()
  })

  app.post<{ Body: CreateApiKeyBody }>('/admin/api-keys', {
    schema: { summary: 'Create an org API key; the secret is returned once', headers: ActorHeadersSchema, body: CreateApiKeyBodySchema, response: { 201: CreatedSchema, ...errors } }
  }, async (request, reply) => {
    const created = await opts.service.createApiKey(request.body, adminActor(request))
    return reply.code(201).send(created)
  })

  app.get<{ Querystring: { orgId: string } }>('/admin/api-keys', {
    schema: { summary: "List an org's API keys (never the secrets)", querystring: Type.Object({ orgId: Uuid }), response: { 200: Type.Array(ApiKeySchema), ...errors } }
  }, async request => opts.service.listApiKeys(request.query.orgId))

  app.delete<{ Params: { id: string } }>('/admin/api-keys/:id', {
    schema: { summary: 'Revoke an API key at once', headers: ActorHeadersSchema, params: IdParams, response: { 204: Type.Null(), ...errors } }
  }, async (request, reply) => {
    await opts.service.revokeApiKey(request.params.id, adminActor(request))
    return reply.code(204).send()
  })

  if (opts.audit !== undefined) registerAuditRoutes(app, opts.audit)

  app.get('/admin/openapi.json', { schema: { hide: true } }, async () => app.swagger())

  return app
}
