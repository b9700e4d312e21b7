// Databases and credentials for the benchmark: real tokens minted with the
// project's own mint functions (bcrypt at the configured cost), bulk-inserted;
// filler rows (one shared bcrypt hash) make the prefix lists as long as a
// table of that size would have them.
import { randomBytes, randomUUID } from 'node:crypto'
import pg from 'pg'

const DIST = new URL('../../dist/', import.meta.url)
const { generateCredential, hashPat, sha256 } = await import(new URL('credentials/mint.js', DIST))
const { migrate } = await import(new URL('store/migrate.js', DIST))
const { RECOMMENDED_PLANNER_SETTINGS } = await import(new URL('store/postgres.js', DIST))

export const ADMIN_URL = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

export function withDatabase (url, name) {
  const u = new URL(url)
  u.pathname = `/${name}`
  return u.toString()
}

export function uniqueName (kind) {
  return `hg_bench_${kind}_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`
}

async function admin (sql) {
  const c = new pg.Client({ connectionString: ADMIN_URL })
  await c.connect()
  try {
    return await c.query(sql)
  } finally {
    await c.end()
  }
}

/** A fresh, migrated database; returns its URL and a small pool for seeding. */
export async function createDatabase (name) {
  if (!/^[a-z0-9_]+$/.test(name)) throw new Error(`bad database name ${name}`)
  await admin(`CREATE DATABASE ${name}`)
  // The planner settings docs/DEPLOYMENT.md recommends for the sidecar's role, here for its database.
  for (const [k, v] of Object.entries(RECOMMENDED_PLANNER_SETTINGS)) await admin(`ALTER DATABASE ${name} SET ${k} = ${v}`)
  const url = withDatabase(ADMIN_URL, name)
  const pool = new pg.Pool({ connectionString: url, max: 4 })
  pool.on('error', () => {})
  await migrate(pool)
  return { name, url, pool }
}

export async function dropDatabase (name) {
  await admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
}

export async function serverVersion () {
  const r = await admin('SHOW server_version')
  return r.rows[0].server_version
}

/** Users spread over orgs; every user is a `member` of one org. */
export function makeWorld ({ users, orgs }) {
  const orgIds = Array.from({ length: orgs }, () => randomUUID())
  const list = Array.from({ length: users }, (_, i) => ({ id: randomUUID(), orgId: orgIds[i % orgs] }))
  return { orgIds, users: list }
}

export async function insertWorld (pool, world) {
  await pool.query(`INSERT INTO orgs (id, slug, name)
    SELECT id, 'bench-' || id, 'Bench org' FROM unnest($1::uuid[]) AS t(id)`, [world.orgIds])
  for (let i = 0; i < world.users.length; i += 10_000) {
    const part = world.users.slice(i, i + 10_000)
    await pool.query(`INSERT INTO users (id, email, status)
      SELECT id, id || '@bench.test', 'active' FROM unnest($1::uuid[]) AS t(id)`, [part.map(u => u.id)])
    await pool.query(`INSERT INTO org_memberships (org_id, user_id, role)
      SELECT o, u, 'member' FROM unnest($1::uuid[], $2::uuid[]) AS t(o, u)`, [part.map(u => u.orgId), part.map(u => u.id)])
  }
}

async function pooled (count, concurrency, fn, onProgress) {
  const out = new Array(count)
  let next = 0
  let done = 0
  async function worker () {
    while (next < count) {
      const i = next++
      out[i] = await fn(i)
      done++
      if (onProgress !== undefined && done % 1000 === 0) onProgress(done)
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker))
  return out
}

/**
 * Real PATs: `hg_pat_` + 48 hex from the CSPRNG, bcrypt at `cost`, owned by
 * the world's users round-robin. age(i) gives created_at as seconds before
 * insertion (the candidate lists are ordered newest first).
 */
export async function mintPats (world, count, cost, age, onProgress) {
  return pooled(count, 16, async i => {
    const { token, prefix, tag } = generateCredential('pat')
    const hash = await hashPat(token, cost)
    const user = world.users[i % world.users.length]
    return { id: randomUUID(), token, prefix, tag, hash, userId: user.id, orgId: user.orgId, ageS: age(i) }
  }, onProgress)
}

/**
 * Inserts minted PATs. tagged (default): with their lookup tag, as this
 * version mints them; false: without, as rows imported from an existing table
 * (walked by prefix until their first use).
 */
export async function insertPats (pool, rows, { tagged = true } = {}) {
  for (let i = 0; i < rows.length; i += 5000) {
    const part = rows.slice(i, i + 5000)
    await pool.query(`INSERT INTO personal_access_tokens (id, user_id, org_id, name, prefix, secret_hash, expires_at, created_at, lookup_tag)
      SELECT id, u, o, 'bench token', p, h, now() + interval '30 days', now() - make_interval(secs => s), g
      FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::float8[], $7::bigint[]) AS t(id, u, o, p, h, s, g)`,
    [part.map(r => r.id), part.map(r => r.userId), part.map(r => r.orgId), part.map(r => r.prefix), part.map(r => r.hash), part.map(r => r.ageS), part.map(r => tagged ? r.tag : null)])
  }
}

/** API keys (SHA-256, no bcrypt), role member, created by the org's first user. */
export function mintApiKeys (world, count) {
  const creator = new Map()
  for (const u of world.users) if (!creator.has(u.orgId)) creator.set(u.orgId, u.id)
  return Array.from({ length: count }, (_, i) => {
    const { token, prefix, tag } = generateCredential('api_key')
    const orgId = world.orgIds[i % world.orgIds.length]
    return { id: randomUUID(), token, prefix, tag, sha: sha256(token), orgId, createdBy: creator.get(orgId) }
  })
}

export async function insertApiKeys (pool, rows) {
  for (let i = 0; i < rows.length; i += 5000) {
    const part = rows.slice(i, i + 5000)
    await pool.query(`INSERT INTO api_keys (id, org_id, created_by, name, prefix, secret_sha256, role, expires_at, lookup_tag)
      SELECT id, o, c, 'bench key', p, decode(h, 'hex'), 'member', now() + interval '30 days', g
      FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::bigint[]) AS t(id, o, c, p, h, g)`,
    [part.map(r => r.id), part.map(r => r.orgId), part.map(r => r.createdBy), part.map(r => r.prefix), part.map(r => r.sha.toString('hex')), part.map(r => r.tag)])
  }
}

/**
 * `count` filler PATs with random prefixes ('hg_pat_' + 3 random hex), all
 * with one precomputed bcrypt hash of a throwaway secret (so a compare costs
 * what a real one does), created 1 to 365 days ago, owned by one filler user.
 * Without a lookup tag, as rows imported from an existing table: tagRemaining
 * gives them one (as their first use would) afterwards.
 */
export async function insertFillers (pool, count, hash) {
  const orgId = randomUUID()
  const userId = randomUUID()
  await insertWorld(pool, { orgIds: [orgId], users: [{ id: userId, orgId }] })
  const chunk = 250_000
  for (let done = 0; done < count; done += chunk) {
    const n = Math.min(chunk, count - done)
    await pool.query(`INSERT INTO personal_access_tokens (user_id, org_id, name, prefix, secret_hash, created_at)
      SELECT $1, $2, 'filler', 'hg_pat_' || lpad(to_hex(floor(random() * 4096)::int), 3, '0'), $3,
             now() - interval '1 day' - random() * interval '364 days'
      FROM generate_series(1, $4::int)`, [userId, orgId, hash, n])
  }
  await pool.query('ANALYZE personal_access_tokens')
}

/**
 * Gives every row still without a lookup tag a random one (what the first
 * verification of each would write; the unused untagged probes too, so that
 * no untagged row is left to walk); returns the seconds it took.
 */
export async function tagRemaining (pool) {
  const t0 = Date.now()
  await pool.query(`UPDATE personal_access_tokens SET lookup_tag = ('x' || substr(md5(id::text), 1, 16))::bit(64)::bigint
    WHERE lookup_tag IS NULL`)
  await pool.query('ANALYZE personal_access_tokens')
  return (Date.now() - t0) / 1000
}

/**
 * Prefix-list shape: prefixes in use, mean and max candidates per prefix,
 * and the expected number of compares for a cold request with a uniformly
 * chosen valid token (it sits at a uniform position of its list: (k+1)/2).
 */
export async function prefixStats (pool) {
  const r = await pool.query(`
    SELECT count(*)::int AS prefixes, sum(k)::bigint AS tokens, avg(k)::float8 AS mean, max(k)::int AS max,
           (sum(k * (k + 1) / 2.0) / sum(k))::float8 AS expected_compares
    FROM (SELECT prefix, count(*) AS k FROM personal_access_tokens GROUP BY prefix) s`)
  const row = r.rows[0]
  return { prefixes: row.prefixes, tokens: Number(row.tokens), mean: row.mean, max: row.max, expectedCompares: row.expected_compares }
}

/**
 * Position (1-based, newest first: the order bcrypt walks the list) of each
 * given token in its prefix's list of untagged rows (the only ones walked).
 */
export async function listPositions (pool, ids) {
  const r = await pool.query(`
    SELECT id, pos::int, k::int FROM (
      SELECT id, row_number() OVER (PARTITION BY prefix ORDER BY created_at DESC) AS pos,
             count(*) OVER (PARTITION BY prefix) AS k
      FROM personal_access_tokens WHERE lookup_tag IS NULL) s
    WHERE id = ANY($1::uuid[])`, [ids])
  return new Map(r.rows.map(x => [x.id, { pos: x.pos, k: x.k }]))
}
