import { cpSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { startEmbeddedPostgres } from '../../src/store/embedded.js'
import { migrate } from '../../src/store/migrate.js'

interface Teardown {
  teardown(fn: () => unknown): void
}

/** Runs the declared core subset against PGlite and the in-process cache (README: "Tests"). */
export const embeddedMode = (): boolean => process.env.HG_TEST_BACKEND === 'embedded'

let template: Promise<string> | null = null

/** One migrated PGlite directory per process; each stack gets a copy (initdb takes seconds, a copy does not). */
function migratedTemplate (): Promise<string> {
  template ??= (async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hg-pglite-template-'))
    process.on('exit', () => rmSync(dir, { recursive: true, force: true }))
    const pgl = await startEmbeddedPostgres(dir)
    const pool = new pg.Pool({ connectionString: pgl.url, max: 1 })
    await migrate(pool)
    await pool.end()
    await pgl.close()
    return dir
  })()
  return template
}

export async function createEmbeddedDatabase (t: Teardown): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'hg-pglite-'))
  cpSync(await migratedTemplate(), dir, { recursive: true })
  const pgl = await startEmbeddedPostgres(dir)
  t.teardown(async () => {
    await pgl.close()
    rmSync(dir, { recursive: true, force: true })
  })
  return pgl.url
}
