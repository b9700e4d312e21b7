import { execFile } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { Writable } from 'node:stream'
import pg from 'pg'
import bcrypt from 'bcrypt'
import { createSidecar, type Sidecar } from '../../src/app.js'
import { loadConfig, type DeepPartial } from '../../src/config/load.js'
import type { Config } from '../../src/config/schema.js'
import { type CreatePatInput, type CreatedCredential, type CredentialService } from '../../src/management/service.js'
import { createLogger } from '../../src/logger.js'
import { migrate } from '../../src/store/migrate.js'
import { request, startUpstream, type RequestOptions, type Response, type Upstream } from './http.js'
import { createEmbeddedDatabase, embeddedMode } from './embedded.js'
import { createRedisNamespace, createTestDatabase, REDIS_URL } from './services.js'
import { until } from './until.js'

export const ROOT = fileURLToPath(new URL('../../', import.meta.url))
export const CLI = fileURLToPath(new URL('../../dist/cli/bin.cjs', import.meta.url))

interface Tap {
  teardown(fn: () => unknown): void
}

// --- secret leak watch: every line any stack or CLI run writes, checked at exit ---

const captured: string[] = []
const secrets = new Set<string>()
const CREDENTIAL = /hg_(pat|key)_[0-9a-f]{48}/

export function rememberSecret (secret: string): void {
  secrets.add(secret)
}

/** A line with its percent-escapes decoded, however often they were applied. */
function decodePercent (line: string): string {
  let out = line
  for (let i = 0; i < 8 && out.includes('%'); i++) out = out.replace(/%([0-9A-Fa-f]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16)))
  return out
}

/** Lines written so far that contain a known secret or anything credential-shaped, also percent-encoded. */
export function leakedLines (lines: readonly string[] = captured): string[] {
  return lines.filter(line => [line, decodePercent(line)].some(l => CREDENTIAL.test(l) || [...secrets].some(s => l.includes(s))))
}

process.on('exit', () => {
  const leaks = leakedLines()
  if (leaks.length > 0) {
    process.stderr.write(`SECRET LEAK: ${leaks.length} log line(s) hold a credential\n`)
    process.exitCode = 1
  }
})

export interface LogCapture {
  lines: string[]
  records(): Array<Record<string, unknown>>
}

export function captureLogs (): { stream: Writable, capture: LogCapture } {
  const lines: string[] = []
  const stream = new Writable({
    write (chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line === '') continue
        lines.push(line)
        captured.push(line)
        if (process.env.HG_TEST_LOG === '1') process.stderr.write(line + '\n')
      }
      cb()
    }
  })
  return {
    stream,
    capture: {
      lines,
      records: () => lines.map(l => JSON.parse(l) as Record<string, unknown>)
    }
  }
}

// --- the stack ---

export interface StackOptions {
  config?: DeepPartial<Config>
  /** Use this database instead of a new one (two sidecars sharing a database). */
  databaseUrl?: string
  redisKeyPrefix?: string
  /** null: no Redis (in-process cache). */
  redisUrl?: string | null
  upstream?: Upstream
  listen?: boolean
  /** The memo's clock and random source (SidecarOptions). */
  now?: () => number
  random?: () => number
}

export interface MintOptions {
  role?: string
  permissions?: string[] | null
  expiresAt?: Date | string
  noExpiry?: boolean
  /** Mint for an existing user/org instead of new ones. */
  userId?: string
  orgId?: string
}

export interface Minted extends CreatedCredential {
  userId: string
  orgId: string
}

export interface Stack {
  config: Config
  sidecar: Sidecar
  port: number
  opsPort: number
  adminPort: number
  upstream: Upstream
  databaseUrl: string
  redisKeyPrefix: string
  logs: LogCapture
  /** Direct SQL for seeding and for changing state under the running sidecar. */
  sql: pg.Pool
  service: CredentialService
  createOrg(): Promise<string>
  createUser(status?: string): Promise<string>
  addMember(orgId: string, userId: string, role: string): Promise<void>
  mintPat(opts?: MintOptions): Promise<Minted>
  request(path: string, opts?: RequestOptions): Promise<Response>
  get(path: string, token?: string, headers?: Record<string, string | string[]>): Promise<Response>
  cli(...args: string[]): Promise<{ code: number, stdout: string, stderr: string }>
  /** Revokes through the CLI; in embedded mode (one process owns PGlite) through the same service the CLI calls. */
  revoke(id: string): Promise<void>
  cliEnv(): NodeJS.ProcessEnv
  /**
   * Holds every bcrypt compare of this secret until the returned release() is
   * called (a test's teardown releases what is left): a compare stays in flight
   * for as long as the test needs, on a loaded machine too.
   */
  hold(secret: string): () => void
}

export function testConfig (base: { databaseUrl: string, redisUrl: string | null, redisKeyPrefix: string, upstreamUrl: string }, overrides: DeepPartial<Config> = {}): Config {
  const cfg = loadConfig({
    env: {},
    overrides: {
      // Load shedding off: PGlite's start-up and a busy CI machine stall the event loop by design.
      server: { host: '127.0.0.1', port: 0, opsPort: 0, adminHost: '127.0.0.1', adminPort: 0, shutdownGraceMs: 5000, overload: { maxEventLoopDelayMs: 0, maxEventLoopUtilization: 0, maxHeapUsedBytes: 0, maxRssBytes: 0 } },
      upstream: { url: base.upstreamUrl, timeoutMs: 10_000 },
      database: { url: base.databaseUrl, poolSize: 4 },
      redis: { url: base.redisUrl, keyPrefix: base.redisKeyPrefix },
      logLevel: 'info',
      auth: { bcryptCost: 4, rateLimit: { maxFailures: 0, windowSeconds: 60 } }
    }
  })
  return loadConfig({ env: {}, overrides: merge(cfg, overrides) as DeepPartial<Config> })
}

function merge (a: unknown, b: unknown): unknown {
  if (typeof a !== 'object' || a === null || Array.isArray(a) || typeof b !== 'object' || b === null || Array.isArray(b)) return b === undefined ? a : b
  const out: Record<string, unknown> = { ...(a as Record<string, unknown>) }
  for (const [k, v] of Object.entries(b)) out[k] = merge(out[k], v)
  return out
}

export async function startStack (t: Tap, opts: StackOptions = {}): Promise<Stack> {
  const embedded = embeddedMode() && opts.databaseUrl === undefined
  const databaseUrl = opts.databaseUrl ?? (embedded ? await createEmbeddedDatabase(t) : await createTestDatabase(t))
  const redisKeyPrefix = opts.redisKeyPrefix ?? createRedisNamespace(t)
  const redisUrl = opts.redisUrl !== undefined ? opts.redisUrl : embeddedMode() ? null : REDIS_URL
  const upstream = opts.upstream ?? await startUpstream(t)
  let config = testConfig({ databaseUrl, redisUrl, redisKeyPrefix, upstreamUrl: upstream.url }, opts.config)
  // PGlite has one session: one connection, for the sidecar and the test's own SQL alike.
  if (embedded) config = { ...config, database: { ...config.database, poolSize: 1 } }
  const { stream, capture } = captureLogs()
  const held = new Map<string, { gate: Promise<void>, open: () => void }>()
  const release = (secret: string): void => {
    held.get(secret)?.open()
    held.delete(secret)
  }
  const bcryptCompare = async (secret: string, hash: string): Promise<boolean> => {
    await held.get(secret)?.gate
    return await bcrypt.compare(secret, hash)
  }
  const sidecar = await createSidecar(config, { logger: createLogger(config.logLevel, stream), now: opts.now, random: opts.random, bcryptCompare })
  t.teardown(async () => {
    for (const secret of [...held.keys()]) release(secret)
    await sidecar.close()
  })
  let port = 0
  let opsPort = 0
  let adminPort = 0
  if (opts.listen !== false) ({ port, opsPort, adminPort } = await sidecar.listen())
  // The shared Redis answers; wait for the sidecar's connection, so a test's first
  // requests are not counted and cached in process while it is still being made
  // (Redis connected mid-test splits a limiter's count in two). A test that
  // passes its own Redis URL decides for itself.
  if (opts.redisUrl === undefined && redisUrl !== null) await until('the sidecar\'s Redis connection is ready', () => sidecar.cache.status() === 'ok', 10_000)

  const sql: pg.Pool = embedded ? sidecar.db.pool : new pg.Pool({ connectionString: databaseUrl, max: 2 })
  if (!embedded) {
    t.teardown(() => sql.end())
    await migrate(sql)
  }
  const service = sidecar.service

  const stack: Stack = {
    config,
    sidecar,
    port,
    opsPort,
    adminPort,
    upstream,
    databaseUrl,
    redisKeyPrefix,
    logs: capture,
    sql,
    service,
    hold (secret) {
      let open = (): void => {}
      const gate = new Promise<void>(resolve => { open = resolve })
      held.set(secret, { gate, open })
      return () => release(secret)
    },
    async createOrg () {
      const id = randomUUID()
      await sql.query('INSERT INTO orgs (id, slug, name) VALUES ($1, $2, $3)', [id, `org-${id}`, 'Test org'])
      return id
    },
    async createUser (status = 'active') {
      const id = randomUUID()
      await sql.query('INSERT INTO users (id, email, status) VALUES ($1, $2, $3)', [id, `${id}@example.test`, status])
      return id
    },
    async addMember (orgId, userId, role) {
      await sql.query('INSERT INTO org_memberships (org_id, user_id, role) VALUES ($1, $2, $3) ON CONFLICT (org_id, user_id) DO UPDATE SET role = $3', [orgId, userId, role])
    },
    async mintPat (m = {}) {
      const orgId = m.orgId ?? await stack.createOrg()
      const userId = m.userId ?? await stack.createUser()
      if (m.userId === undefined || m.role !== undefined) await stack.addMember(orgId, userId, m.role ?? 'member')
      const input: CreatePatInput = { userId, orgId, name: 'test token', permissions: m.permissions ?? null }
      if (m.expiresAt !== undefined) input.expiresAt = m.expiresAt
      if (m.noExpiry === true) input.noExpiry = true
      const created = await service.createPat(input)
      rememberSecret(created.token)
      return { ...created, userId, orgId }
    },
    request: (path, o) => request(port, path, o),
    get: (path, token, headers = {}) => request(port, path, { headers: token === undefined ? headers : { 'x-api-key': token, ...headers } }),
    cliEnv: () => ({
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      DATABASE_URL: databaseUrl,
      ...(redisUrl === null ? {} : { REDIS_URL: redisUrl }),
      REDIS_KEY_PREFIX: redisKeyPrefix,
      BCRYPT_COST: '4',
      LOG_LEVEL: 'warn'
    }),
    cli: (...args) => runCli(args, stack.cliEnv()),
    async revoke (id) {
      if (embedded) {
        await service.revokePat(id)
        return
      }
      const res = await stack.cli('token', 'revoke', id)
      if (res.code !== 0) throw new Error(`token revoke failed: ${res.stderr}`)
    }
  }
  return stack
}

export function runCli (args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number, stdout: string, stderr: string }> {
  return new Promise(resolve => {
    execFile(process.execPath, [CLI, ...args], { env, cwd: ROOT, timeout: 60_000 }, (err, stdout, stderr) => {
      for (const line of stderr.split('\n')) if (line !== '') captured.push(line)
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1
      const m = /hg_(pat|key)_[0-9a-f]{48}/.exec(stdout)
      if (m !== null) rememberSecret(m[0])
      resolve({ code, stdout, stderr })
    })
  })
}
