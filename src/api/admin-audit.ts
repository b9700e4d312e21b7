import { Type, type Static } from '@sinclair/typebox'
import { HG_ERR_REQUEST_VALIDATION } from '../errors.js'
import { sendError } from '../http/reply.js'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { ActorType, DEFAULT_EVENT_LIMIT, EVENT_KINDS, MAX_EVENT_LIMIT, type Actor, type CredentialEvent, type EventFilter, type EventKind } from '../audit/events.js'
import { MAX_LEAK_BATCH, type LeakReporter } from '../audit/leaks.js'

const Uuid = Type.String({ format: 'uuid' })
const ErrorSchema = Type.Object({ error: Type.String(), message: Type.String() })
const errors = { 400: ErrorSchema, 401: ErrorSchema, 503: ErrorSchema }

/**
 * Who is acting, as the calling app knows it (its user id, an operator's name).
 * Printable ASCII only: it is stored and shown on terminals.
 */
export const ActorHeadersSchema = Type.Object({
  'x-actor-id': Type.Optional(Type.String({ pattern: '^[\\x20-\\x7e]{1,200}$', description: 'Who is acting (recorded as actor_id in the audit trail)' }))
})

/** The actor of an admin API call. */
export function adminActor (request: FastifyRequest, type: ActorType = ActorType.adminApi): Actor {
  const id = request.headers['x-actor-id']
  return { type, id: typeof id === 'string' ? id : null, clientIp: request.ip, requestId: request.id }
}

export const EventsQuerySchema = Type.Object({
  credentialId: Type.Optional(Uuid),
  orgId: Type.Optional(Uuid),
  userId: Type.Optional(Uuid),
  kind: Type.Optional(Type.Union(EVENT_KINDS.map(k => Type.Literal(k)))),
  since: Type.Optional(Type.String({ format: 'date-time' })),
  before: Type.Optional(Type.String({ pattern: '^[0-9]{1,18}$', description: 'An event id: only events older than it (the next page)' })),
  limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,4}$', description: `1 to ${MAX_EVENT_LIMIT}, default ${DEFAULT_EVENT_LIMIT}` }))
}, { additionalProperties: false })
export type EventsQuery = Static<typeof EventsQuerySchema>

const NullableString = Type.Union([Type.String(), Type.Null()])
const EventSchema = Type.Object({
  id: Type.String(),
  at: Type.String({ format: 'date-time' }),
  kind: Type.String(),
  credentialType: Type.String(),
  credentialId: NullableString,
  prefix: NullableString,
  orgId: NullableString,
  userId: NullableString,
  actorType: NullableString,
  actorId: NullableString,
  clientIp: NullableString,
  requestId: NullableString,
  detail: Type.Union([Type.Object({}, { additionalProperties: true }), Type.Null()])
})

export const LeakReportSchema = Type.Array(Type.Object({
  token: Type.String({ maxLength: 4096 }),
  type: Type.Optional(Type.String({ maxLength: 200 })),
  url: Type.Optional(Type.String({ maxLength: 4096 })),
  source: Type.Optional(Type.String({ maxLength: 200 }))
}), { maxItems: MAX_LEAK_BATCH })
export type LeakReport = Static<typeof LeakReportSchema>

const LeakVerdictSchema = Type.Object({
  token_hash: Type.String({ description: 'SHA-256 of the reported string, hex' }),
  token_type: Type.String(),
  label: Type.Union([Type.Literal('true_positive'), Type.Literal('false_positive')])
})

export interface AuditRoutesOptions {
  listEvents: (filter: EventFilter) => Promise<CredentialEvent[]>
  leaks: LeakReporter
}

/** docs/DESIGN.md §10 on the admin port: the audit trail and GitHub secret-scanning leak reports. */
export function registerAuditRoutes (app: FastifyInstance, opts: AuditRoutesOptions): void {
  app.get<{ Querystring: EventsQuery }>('/admin/credential-events', {
    schema: {
      summary: 'Credential events, newest first',
      querystring: EventsQuerySchema,
      response: { 200: Type.Array(EventSchema), ...errors }
    }
  }, async (request, reply) => {
    const q = request.query
    const limit = q.limit === undefined ? DEFAULT_EVENT_LIMIT : Number(q.limit)
    if (limit < 1 || limit > MAX_EVENT_LIMIT) {
      return sendError(reply, HG_ERR_REQUEST_VALIDATION, { message: `limit must be 1 to ${MAX_EVENT_LIMIT}` })
    }
    const filter: EventFilter = { limit }
    if (q.credentialId !== undefined) filter.credentialId = q.credentialId.toLowerCase()
    if (q.orgId !== undefined) filter.orgId = q.orgId.toLowerCase()
    if (q.userId !== undefined) filter.userId = q.userId.toLowerCase()
    if (q.kind !== undefined) filter.kind = q.kind as EventKind
    if (q.since !== undefined) filter.since = new Date(q.since)
    if (q.before !== undefined) filter.before = q.before
    return opts.listEvents(filter)
  })

  app.post<{ Body: LeakReport }>('/admin/leaked-credentials', {
    schema: {
      summary: 'Report leaked credentials (GitHub secret-scanning partner payload); ours are revoked at once',
      description: `At most ${MAX_LEAK_BATCH} items. A string that verifies as one of our credentials is revoked (when not already) and recorded as leak_reported: true_positive. Anything else changes nothing: false_positive.`,
      headers: ActorHeadersSchema,
      body: LeakReportSchema,
      response: { 200: Type.Array(LeakVerdictSchema), ...errors }
    }
  }, async request => {
    const actor = adminActor(request, ActorType.leakReport)
    return opts.leaks.report(request.body.map(i => ({ ...i, type: i.type ?? '' })), {
      actorId: actor.id ?? null,
      clientIp: actor.clientIp ?? null,
      requestId: actor.requestId ?? null,
      requester: request.raw.socket
    })
  })
}
