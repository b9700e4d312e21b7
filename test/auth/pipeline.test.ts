import t from 'tap'
import { authorize, createPipeline, type PipelineDeps, type PipelineRequest } from '../../src/auth/pipeline.js'
import { createPolicy } from '../../src/auth/policy.js'
import type { Principal } from '../../src/auth/principal.js'
import { createFailureLimiter } from '../../src/auth/rate-limit.js'
import { loadConfig } from '../../src/config/load.js'

/** The pipeline's stages as plain functions: no server, no store (docs/DESIGN.md §2). */

const config = loadConfig({ env: {} })
const viewer: Principal = { type: 'pat', credentialId: 'c', prefix: 'hg_pat_abc', userId: 'u', orgId: 'o', role: 'viewer', permissions: ['reports:read', 'scans:read'], permissionsHeader: 'reports:read,scans:read', expiresAt: null }
const PAT = `hg_pat_${'ab'.repeat(24)}`

function deps (over: Partial<PipelineDeps> = {}): PipelineDeps {
  return {
    policy: createPolicy(config),
    limiter: createFailureLimiter({ maxFailures: 3, windowSeconds: 60 }),
    apiKeys: 'validate',
    authenticatePat: async () => ({ ok: true, principal: viewer }),
    authenticateApiKey: async () => ({ ok: true, principal: { ...viewer, type: 'api_key', userId: null } }),
    ...over
  }
}

function req (url: string, headers: Record<string, string> = {}, method = 'GET'): PipelineRequest {
  return { method, url, headers, rawHeaders: Object.entries(headers).flat(), ip: '192.0.2.1' }
}

t.test('stage 1 refuses a bad path before anything else, and never touches the request', async t => {
  const r = req('/api/../admin', { 'x-api-key': PAT, 'x-hg-role': 'owner' })
  const frozen = JSON.stringify(r)
  const out = createPipeline(deps()).run(r)
  t.notOk(out instanceof Promise, 'answered without I/O')
  t.match(out, { pass: false, reason: 'bad_request', error: { status: 400 } })
  t.equal(JSON.stringify(r), frozen, 'input unchanged')
})

t.test('public routes pass without a credential; others need one', async t => {
  const p = createPipeline(deps())
  t.match(p.run(req('/api/status')), { pass: true, reason: 'public' })
  t.match(p.run(req('/api/scans')), { pass: false, reason: 'missing', error: { status: 401 } })
  t.match(await p.run(req('/api/scans', { 'x-api-key': PAT })), { pass: true, reason: 'ok', principal: viewer })
})

t.test('stage 3 authorize: the route permission against the effective ones', async t => {
  const policy = createPolicy(config)
  t.equal(authorize(policy.decide('GET', '/api/scans'), viewer, 'pat', 'hg_pat_abc'), null)
  t.match(authorize(policy.decide('POST', '/api/scans'), viewer, 'pat', 'hg_pat_abc'), { reason: 'forbidden', requiredPermission: 'scans:write' })
  t.match(await createPipeline(deps()).run(req('/api/scans', { 'x-api-key': PAT }, 'POST')), { pass: false, requiredPermission: 'scans:write' })
})

t.test('failures count against the client; a store error answers 503 and is not a 401', async t => {
  const p = createPipeline(deps({ authenticatePat: async () => ({ ok: false, reason: 'bad_secret', error: { status: 401 } as never }) }))
  for (let i = 0; i < 3; i++) t.match(await p.run(req('/api/scans', { 'x-api-key': PAT })), { pass: false, reason: 'bad_secret' })
  t.match(p.run(req('/api/scans', { 'x-api-key': PAT })), { pass: false, reason: 'rate_limited', retryAfter: 60 })
  const broken = createPipeline(deps({ authenticatePat: async () => { throw Object.assign(new Error('down'), { code: 'HG_ERR_STORE_UNAVAILABLE' }) } }))
  t.match(await broken.run(req('/api/scans', { 'x-api-key': PAT })), { pass: false, reason: 'unavailable', error: { status: 503 } })
})
