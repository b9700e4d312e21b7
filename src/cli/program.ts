import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir, userInfo } from 'node:os'
import { join } from 'node:path'
import { Command, CommanderError } from 'commander'
import { ActorType, DEFAULT_EVENT_LIMIT, EVENT_KINDS, MAX_EVENT_LIMIT, escapeText, safeJson, type Actor, type CredentialEvent, type EventFilter, type EventKind } from '../audit/events.js'
import { ConfigError, loadConfig } from '../config/load.js'
import type { Config } from '../config/schema.js'
import { createCredentialService, parseDuration, requireUuid, type CreatedCredential, type CredentialService, type PatView } from '../management/service.js'
import { createLogger } from '../logger.js'
import { listEvents } from '../store/events.js'
import { migrate, migrateDatabase, type MigrateResult } from '../store/migrate.js'
import { DatabaseConfigError, openStore, resolveDatabase, type Store } from '../store/open.js'
import { poolerHint } from '../store/postgres.js'

/** A refusal: printed on stderr, exit code 1. */
class UsageError extends Error {}

function config (): Config {
  return loadConfig({ env: process.env })
}

/** Runs a management command against DATABASE_URL, or against the embedded database when none is set. */
async function withStore<T> (fn: (store: Store, cfg: Config) => Promise<T>): Promise<T> {
  let database
  try {
    database = await resolveDatabase(config(), process.env)
  } catch (err) {
    throw err instanceof DatabaseConfigError ? new UsageError('DATABASE_URL is not set') : err
  }
  const cfg = database.config
  const store = openStore(cfg, { cli: true })
  try {
    if (database.embedded !== null) await migrate(store.db.pool)
    await store.cache.waitReady(2000)
    return await fn(store, cfg)
  } finally {
    await store.close()
    await database.close()
  }
}

function service (store: Store, cfg: Config): CredentialService {
  return createCredentialService({ db: store.db, cache: store.cache, config: cfg })
}

/** The audit trail's actor of a CLI command: the operating-system user running it. */
function cliActor (): Actor {
  let id: string | null = null
  try {
    id = userInfo().username
  } catch {}
  return { type: ActorType.cli, id }
}

function parseSince (text: string): Date {
  const t = text.trim()
  if (/^\d{1,6}[mhdwy]$/.test(t)) return new Date(Date.now() - parseDuration(t))
  const at = Date.parse(t)
  if (Number.isNaN(at)) throw new UsageError(`--since must be an ISO 8601 date-time or a duration such as 24h or 7d (got ${JSON.stringify(t.slice(0, 40))})`)
  return new Date(at)
}

export interface EventsListOptions {
  credentialId?: string
  orgId?: string
  userId?: string
  kind?: string
  since?: string
  limit?: string
  json?: boolean
}

export function eventFilter (o: EventsListOptions): EventFilter {
  const limit = o.limit === undefined ? DEFAULT_EVENT_LIMIT : Number(o.limit)
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_EVENT_LIMIT) throw new UsageError(`--limit must be a whole number from 1 to ${MAX_EVENT_LIMIT}`)
  const filter: EventFilter = { limit }
  if (o.credentialId !== undefined) filter.credentialId = requireUuid(o.credentialId, 'credential-id')
  if (o.orgId !== undefined) filter.orgId = requireUuid(o.orgId, 'org-id')
  if (o.userId !== undefined) filter.userId = requireUuid(o.userId, 'user-id')
  if (o.kind !== undefined) {
    if (!(EVENT_KINDS as readonly string[]).includes(o.kind)) throw new UsageError(`--kind must be one of ${EVENT_KINDS.join(', ')}`)
    filter.kind = o.kind as EventKind
  }
  if (o.since !== undefined) filter.since = parseSince(o.since)
  return filter
}

/** One line per event, every stored string escaped: no control or bidi character reaches the terminal raw. */
export function formatEvents (rows: readonly CredentialEvent[], json: boolean): string {
  if (json) return safeJson(rows) + '\n'
  if (rows.length === 0) return 'no events\n'
  return rows.map(e => {
    const actor = e.actorType === null ? '-' : e.actorId === null ? e.actorType : `${e.actorType}:${e.actorId}`
    const fields = [
      e.at, e.kind.padEnd(20), e.credentialType.padEnd(7), e.prefix ?? '-', e.credentialId ?? '-',
      `actor=${actor}`, `ip=${e.clientIp ?? '-'}`, `req=${e.requestId ?? '-'}`
    ]
    if (e.detail !== null) fields.push(JSON.stringify(e.detail))
    return escapeText(fields.join('  ')) + '\n'
  }).join('')
}

function splitList (v: string | undefined): string[] | undefined {
  return v === undefined ? undefined : v.split(',').map(s => s.trim()).filter(s => s !== '')
}

function printCreated (c: CreatedCredential, json: boolean, what: string, extra: Record<string, unknown> = {}): void {
  for (const w of c.warnings) process.stderr.write(`warning: ${escapeText(w)}\n`)
  if (json) {
    process.stdout.write(safeJson({ id: c.id, token: c.token, prefix: c.prefix, name: c.name, expiresAt: c.expiresAt, permissions: c.permissions, ...extra }) + '\n')
    return
  }
  process.stdout.write([
    `${what} created. Copy it now: it is shown this once and cannot be recovered.`,
    '',
    `  ${c.token}`,
    '',
    `  id          ${c.id}`,
    `  prefix      ${c.prefix}`,
    `  name        ${escapeText(c.name)}`,
    `  expires     ${c.expiresAt ?? 'never'}`,
    `  permissions ${c.permissions === null ? '(all of the role)' : c.permissions.join(',')}`,
    ...Object.entries(extra).map(([k, v]) => `  ${k.padEnd(11)} ${escapeText(String(v))}`),
    ''
  ].join('\n'))
}

function stateOf (r: { revokedAt: string | null, expiresAt: string | null }): string {
  if (r.revokedAt !== null) return 'revoked'
  return r.expiresAt !== null && Date.parse(r.expiresAt) <= Date.now() ? 'expired' : 'active'
}

/** The options every credential-minting command takes. */
function withCreateOptions (cmd: Command): Command {
  return cmd
    .option('--permissions <list>', "comma-separated subset of the role's permissions")
    .option('--expires-in <duration>', 'lifetime such as 30d, 12h, 2w, 1y')
    .option('--expires-at <iso>', 'expiry as an ISO 8601 date-time')
    .option('--no-expiry', 'never expires (when the policy allows it)')
    .option('--json', 'print one JSON object')
}

/**
 * Stored text reaches the terminal escaped (docs/DESIGN.md §2.1): names are
 * refused with control or bidi characters now, but rows written before, or by
 * another tool, may hold them.
 */
function printPats (rows: PatView[], json: boolean): void {
  if (json) {
    process.stdout.write(safeJson(rows) + '\n')
    return
  }
  if (rows.length === 0) {
    process.stdout.write('no tokens\n')
    return
  }
  for (const r of rows) {
    process.stdout.write(escapeText(`${r.id}  ${r.prefix}  ${stateOf(r).padEnd(7)}  expires ${r.expiresAt ?? 'never'}  ${r.name}`) + '\n')
  }
}

export function buildCli (): Command {
  const program = new Command('hg-sidecar')
    .description('Authentication sidecar for HarborGuard scan services')
    .showHelpAfterError()
    .exitOverride()

  program.command('serve', { isDefault: true })
    .description('run the proxy, ops and admin listeners (the default)')
    .action(async () => {
      const cfg = config()
      // Loaded here: the management commands start faster without fastify and the proxy.
      const { serve } = await import('../server.js')
      await serve(cfg, createLogger(cfg.logLevel))
    })

  program.command('demo')
    .description('serve with a demo org, user and a fresh demo token (embedded database unless DATABASE_URL is set)')
    .option('--ephemeral', 'keep the data in a temporary directory, removed on exit')
    .action(async (o: { ephemeral?: boolean }) => {
      let cfg = config()
      let cleanup: (() => void) | undefined
      if (o.ephemeral === true) {
        const dir = mkdtempSync(join(tmpdir(), 'hg-sidecar-demo-'))
        cfg = { ...cfg, database: { ...cfg.database, url: null, dataDir: dir } }
        cleanup = () => rmSync(dir, { recursive: true, force: true })
      }
      const { serve } = await import('../server.js')
      await serve(cfg, createLogger(cfg.logLevel), { demo: true, onClosed: cleanup })
    })

  program.command('migrate')
    .description('apply the database migrations (a no-op when up to date)')
    .action(async () => {
      const cfg = config()
      // MIGRATE_DATABASE_URL (or DATABASE_URL) on a connection of its own; the embedded
      // database only when neither is set (withStore migrates it on opening).
      const res: MigrateResult = cfg.database.url === null && cfg.database.migrateUrl === null
        ? await withStore(async store => await migrate(store.db.pool))
        : await migrateDatabase(cfg.database)
      process.stdout.write(res.applied.length === 0
        ? `schema is up to date (version ${res.current})\n`
        : `applied migration(s) ${res.applied.join(', ')}; schema version ${res.current}\n`)
    })

  const token = program.command('token').description('personal access tokens')
  withCreateOptions(token.command('create')
    .description('mint a PAT for a user in an org; prints the secret once')
    .requiredOption('--user-id <uuid>', 'owner')
    .requiredOption('--org-id <uuid>', 'org the token is bound to')
    .requiredOption('--name <name>', 'what the token is for'))
    .action(async (o: { userId: string, orgId: string, name: string, expiresIn?: string, expiresAt?: string, expiry: boolean, permissions?: string, json?: boolean }) => {
      await withStore(async (store, cfg) => {
        const created = await service(store, cfg).createPat({
          userId: o.userId,
          orgId: o.orgId,
          name: o.name,
          expiresIn: o.expiresIn,
          expiresAt: o.expiresAt,
          noExpiry: !o.expiry,
          permissions: splitList(o.permissions) ?? null
        }, cliActor())
        printCreated(created, o.json === true, 'Personal access token')
      })
    })
  token.command('list')
    .description("list a user's tokens (never the secrets)")
    .requiredOption('--user-id <uuid>', 'owner')
    .option('--org-id <uuid>', 'only tokens bound to this org')
    .option('--json', 'print JSON')
    .action(async (o: { userId: string, orgId?: string, json?: boolean }) => {
      await withStore(async (store, cfg) => printPats(await service(store, cfg).listPats(o.userId, o.orgId ?? null), o.json === true))
    })
  token.command('revoke')
    .description('revoke a token at once, on every replica')
    .argument('<id>', 'token id')
    .action(async (id: string) => {
      await withStore(async (store, cfg) => {
        const r = await service(store, cfg).revokePat(id, cliActor())
        process.stdout.write(escapeText(`revoked ${r.id} (${r.prefix}) at ${r.revokedAt ?? ''}`) + '\n')
      })
    })

  const apiKey = program.command('api-key').description('org-owned API keys')
  withCreateOptions(apiKey.command('create')
    .description('mint an API key for an org; prints the secret once')
    .requiredOption('--org-id <uuid>', 'owning org')
    .requiredOption('--created-by <uuid>', 'an admin or owner of the org')
    .requiredOption('--name <name>', 'what the key is for')
    .requiredOption('--role <role>', "the key's fixed role, at most the creator's"))
    .action(async (o: { orgId: string, createdBy: string, name: string, role: string, permissions?: string, expiresIn?: string, expiresAt?: string, expiry: boolean, json?: boolean }) => {
      await withStore(async (store, cfg) => {
        const created = await service(store, cfg).createApiKey({
          orgId: o.orgId,
          createdBy: o.createdBy,
          name: o.name,
          role: o.role,
          permissions: splitList(o.permissions) ?? null,
          expiresIn: o.expiresIn,
          expiresAt: o.expiresAt,
          noExpiry: !o.expiry
        }, cliActor())
        printCreated(created, o.json === true, 'API key', { role: created.role })
      })
    })
  apiKey.command('list')
    .description("list an org's API keys (never the secrets)")
    .requiredOption('--org-id <uuid>', 'owning org')
    .option('--json', 'print JSON')
    .action(async (o: { orgId: string, json?: boolean }) => {
      await withStore(async (store, cfg) => {
        const rows = await service(store, cfg).listApiKeys(o.orgId)
        if (o.json === true) {
          process.stdout.write(safeJson(rows) + '\n')
          return
        }
        if (rows.length === 0) process.stdout.write('no API keys\n')
        for (const r of rows) {
          process.stdout.write(escapeText(`${r.id}  ${r.prefix}  ${stateOf(r).padEnd(7)}  ${r.role.padEnd(7)}  expires ${r.expiresAt ?? 'never'}  ${r.name}`) + '\n')
        }
      })
    })
  apiKey.command('revoke')
    .description('revoke an API key at once')
    .argument('<id>', 'key id')
    .action(async (id: string) => {
      await withStore(async (store, cfg) => {
        const r = await service(store, cfg).revokeApiKey(id, cliActor())
        process.stdout.write(escapeText(`revoked ${r.id} (${r.prefix}) at ${r.revokedAt ?? ''}`) + '\n')
      })
    })

  program.command('events').description('the credential audit trail')
    .command('list')
    .description('credential events, newest first (created, revoked, used after revoke/expiry, leak reported, ...)')
    .option('--credential-id <uuid>', 'events of one token or key')
    .option('--org-id <uuid>', "events of an org's credentials")
    .option('--user-id <uuid>', "events of a user's tokens")
    .option('--kind <kind>', `one of ${EVENT_KINDS.join(', ')}`)
    .option('--since <when>', 'ISO 8601 date-time, or a duration back from now such as 24h or 7d')
    .option('--limit <n>', `at most this many (default ${DEFAULT_EVENT_LIMIT}, max ${MAX_EVENT_LIMIT})`)
    .option('--json', 'print JSON')
    .action(async (o: EventsListOptions) => {
      const filter = eventFilter(o)
      await withStore(async store => {
        process.stdout.write(formatEvents(await listEvents(store.db, filter), o.json === true))
      })
    })

  return program
}

export async function main (argv: string[]): Promise<number> {
  const program = buildCli()
  try {
    await program.parseAsync(argv)
    return 0
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2
    if (err instanceof ConfigError) {
      process.stderr.write(`hg-sidecar: ${err.message}\n`)
      return 2
    }
    let message = err instanceof Error ? err.message : String(err)
    const cause = err instanceof Error ? (err.cause as { message?: string } | undefined)?.message : undefined
    if (cause !== undefined && cause !== '') message += ` (${cause})`
    const hint = poolerHint(err)
    if (hint !== null && !message.includes(hint)) message += `\nhg-sidecar: ${hint}`
    process.stderr.write(`hg-sidecar: ${message}\n`)
    return 1
  }
}
