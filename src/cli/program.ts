import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Command, CommanderError } from 'commander'
import { createRoleTable } from '../auth/principal.js'
import { ConfigError, loadConfig } from '../config/load.js'
import type { Config } from '../config/schema.js'
import { createCredentialService, type CreatedCredential, type PatView } from '../credentials/service.js'
import { createLogger } from '../logger.js'
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../store/embedded.js'
import { migrate, migrateDatabase, type MigrateResult } from '../store/migrate.js'
import { openStore, type Store } from '../store/open.js'
import { poolerHint } from '../store/postgres.js'

/** A refusal: printed on stderr, exit code 1. */
class UsageError extends Error {}

function config (): Config {
  return loadConfig({ env: process.env })
}

/** Runs a management command against DATABASE_URL, or against the embedded database when none is set. */
async function withStore<T> (fn: (store: Store, cfg: Config) => Promise<T>): Promise<T> {
  let cfg = config()
  let embedded: EmbeddedPostgres | null = null
  if (cfg.database.url === null) {
    if (process.env.NODE_ENV === 'production') throw new UsageError('DATABASE_URL is not set')
    embedded = await startEmbeddedPostgres(cfg.database.dataDir)
    cfg = { ...cfg, database: { ...cfg.database, url: embedded.url } }
  }
  const store = openStore(cfg)
  try {
    if (embedded !== null) await migrate(store.db.pool)
    if (store.cache !== null) await store.cache.waitReady(2000)
    return await fn(store, cfg)
  } finally {
    await store.close()
    await embedded?.close()
  }
}

function service (store: Store, cfg: Config): ReturnType<typeof createCredentialService> {
  return createCredentialService({ db: store.db, cache: store.cache, roles: createRoleTable(cfg.roles), config: cfg })
}

function splitList (v: string | undefined): string[] | undefined {
  return v === undefined ? undefined : v.split(',').map(s => s.trim()).filter(s => s !== '')
}

function printCreated (c: CreatedCredential, json: boolean, what: string, extra: Record<string, unknown> = {}): void {
  for (const w of c.warnings) process.stderr.write(`warning: ${w}\n`)
  if (json) {
    process.stdout.write(JSON.stringify({ id: c.id, token: c.token, prefix: c.prefix, name: c.name, expiresAt: c.expiresAt, permissions: c.permissions, ...extra }) + '\n')
    return
  }
  process.stdout.write([
    `${what} created. Copy it now: it is shown this once and cannot be recovered.`,
    '',
    `  ${c.token}`,
    '',
    `  id          ${c.id}`,
    `  prefix      ${c.prefix}`,
    `  name        ${c.name}`,
    `  expires     ${c.expiresAt ?? 'never'}`,
    `  permissions ${c.permissions === null ? '(all of the role)' : c.permissions.join(',')}`,
    ...Object.entries(extra).map(([k, v]) => `  ${k.padEnd(11)} ${String(v)}`),
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

function printPats (rows: PatView[], json: boolean): void {
  if (json) {
    process.stdout.write(JSON.stringify(rows) + '\n')
    return
  }
  if (rows.length === 0) {
    process.stdout.write('no tokens\n')
    return
  }
  for (const r of rows) {
    process.stdout.write(`${r.id}  ${r.prefix}  ${stateOf(r).padEnd(7)}  expires ${r.expiresAt ?? 'never'}  ${r.name}\n`)
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
        })
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
        const r = await service(store, cfg).revokePat(id)
        process.stdout.write(`revoked ${r.id} (${r.prefix}) at ${r.revokedAt ?? ''}\n`)
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
        })
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
          process.stdout.write(JSON.stringify(rows) + '\n')
          return
        }
        if (rows.length === 0) process.stdout.write('no API keys\n')
        for (const r of rows) {
          process.stdout.write(`${r.id}  ${r.prefix}  ${stateOf(r).padEnd(7)}  ${r.role.padEnd(7)}  expires ${r.expiresAt ?? 'never'}  ${r.name}\n`)
        }
      })
    })
  apiKey.command('revoke')
    .description('revoke an API key at once')
    .argument('<id>', 'key id')
    .action(async (id: string) => {
      await withStore(async (store, cfg) => {
        const r = await service(store, cfg).revokeApiKey(id)
        process.stdout.write(`revoked ${r.id} (${r.prefix}) at ${r.revokedAt ?? ''}\n`)
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
