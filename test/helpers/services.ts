import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { Redis } from 'ioredis'

export const ADMIN_DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'

interface Teardown {
  teardown(fn: () => unknown): void
}

export function uniqueName (kind: string): string {
  return `hg_t_${kind}_${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`
}

function withDatabase (url: string, database: string): string {
  const u = new URL(url)
  u.pathname = `/${database}`
  return u.toString()
}

/** A fresh database of its own for one test file; dropped at teardown. */
export async function createTestDatabase (t: Teardown): Promise<string> {
  const name = uniqueName('db')
  const admin = new pg.Client({ connectionString: ADMIN_DATABASE_URL })
  await admin.connect()
  try {
    await admin.query(`CREATE DATABASE ${name}`)
  } finally {
    await admin.end()
  }
  t.teardown(async () => {
    const c = new pg.Client({ connectionString: ADMIN_DATABASE_URL })
    await c.connect()
    try {
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
    } finally {
      await c.end()
    }
  })
  return withDatabase(ADMIN_DATABASE_URL, name)
}

/** A Redis key namespace of its own; its keys are deleted at teardown. */
export function createRedisNamespace (t: Teardown): string {
  const prefix = `${uniqueName('r')}:`
  t.teardown(async () => {
    const r = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 })
    try {
      await r.connect()
      let cursor = '0'
      do {
        const [next, keys] = await r.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
        cursor = next
        if (keys.length > 0) await r.del(...keys)
      } while (cursor !== '0')
    } catch {
      // Redis may be the thing a test stopped; nothing to clean then.
    } finally {
      r.disconnect()
    }
  })
  return prefix
}
