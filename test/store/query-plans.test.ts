import { randomBytes } from 'node:crypto'
import pg from 'pg'
import t from 'tap'
import { migrate } from '../../src/store/migrate.js'
import { createDb, RECOMMENDED_PLANNER_SETTINGS, type Db } from '../../src/store/postgres.js'
import { apiKeyStates, patPrefixEntry, patStates, patTagCandidates, tagPat, touchApiKeys, touchPats } from '../../src/store/queries.js'
import { ADMIN_DATABASE_URL, createTestDatabase } from '../helpers/services.js'

interface PlanNode {
  'Node Type': string
  'Relation Name'?: string
  Plans?: PlanNode[]
}

function scans (node: PlanNode, out: string[] = []): string[] {
  if (node['Relation Name'] !== undefined) out.push(`${node['Node Type']} on ${node['Relation Name']}`)
  for (const child of node.Plans ?? []) scans(child, out)
  return out
}

/**
 * A Db whose statements are explained instead of run: the very text and
 * values the store functions send, planned on a connection of the service's
 * own pool (so with the settings recommended for its role), once as the plan for these values
 * and once as the generic plan a prepared statement settles on after five runs.
 */
function explaining (db: Db, client: pg.PoolClient, plans: Map<string, string[]>): Db {
  const explain = async (name: string, text: string, values: unknown[]): Promise<never[]> => {
    for (const mode of ['force_custom_plan', 'force_generic_plan']) {
      await client.query(`SET plan_cache_mode = ${mode}`)
      const { rows } = await client.query<{ 'QUERY PLAN': Array<{ Plan: PlanNode }> }>(`EXPLAIN (FORMAT JSON) ${text}`, values)
      const plan = rows[0]?.['QUERY PLAN'][0]?.Plan
      if (plan === undefined) throw new Error(`no plan for ${name}`)
      plans.set(`${name} (${mode.split('_')[1]})`, scans(plan))
    }
    await client.query('RESET plan_cache_mode')
    return []
  }
  return { ...db, query: explain, queryArrays: explain }
}

/**
 * A database with the planner settings docs/DEPLOYMENT.md recommends for the
 * sidecar's role (here per database: the tests share one role).
 */
async function tunedDatabase (t: { teardown(fn: () => unknown): void }): Promise<string> {
  const url = await createTestDatabase(t)
  const admin = new pg.Client({ connectionString: ADMIN_DATABASE_URL })
  await admin.connect()
  try {
    const name = new URL(url).pathname.slice(1)
    for (const [k, v] of Object.entries(RECOMMENDED_PLANNER_SETTINGS)) await admin.query(`ALTER DATABASE ${name} SET ${k} = ${v}`)
  } finally {
    await admin.end()
  }
  return url
}

// The shape of a small deployment (and of the benchmark): 1,000 tokens and
// keys, 250 users in 20 orgs. Tables this small are where the default cost
// model scans instead of looking up; at 100,000 tokens every planner indexes.
t.test('the request-path statements look rows up by index on a small deployment', async t => {
  const url = await tunedDatabase(t)
  const db = createDb({ url, poolSize: 2, connectTimeoutMs: 5000, queryTimeoutMs: 10_000 })
  t.teardown(() => db.close())
  await migrate(db.pool)
  await db.pool.query(`
    INSERT INTO orgs (slug, name) SELECT 'org' || g, 'Org ' || g FROM generate_series(1, 20) g;
    INSERT INTO users (email) SELECT 'u' || g || '@example.test' FROM generate_series(1, 250) g;
    INSERT INTO org_memberships (org_id, user_id, role)
      SELECT o.id, u.id, 'member' FROM (SELECT id, row_number() OVER (ORDER BY email) AS n FROM users) u
      JOIN (SELECT id, row_number() OVER (ORDER BY slug) AS n FROM orgs) o ON o.n = u.n % 20 + 1;
    INSERT INTO personal_access_tokens (user_id, org_id, name, prefix, secret_hash, lookup_tag)
      SELECT m.user_id, m.org_id, 'pat' || g, 'hg_pat_' || substr(md5(g::text), 1, 3), 'not-a-hash',
             CASE WHEN g % 4 <> 0 THEN ('x' || substr(md5(g::text), 4, 16))::bit(64)::bigint END
      FROM generate_series(1, 1000) g JOIN (SELECT *, row_number() OVER () AS n FROM org_memberships) m ON m.n = g % 250 + 1;
    INSERT INTO api_keys (org_id, name, prefix, secret_sha256, role)
      SELECT id, 'key' || g, 'hg_key_' || substr(md5(g::text), 1, 3), sha256(g::text::bytea), 'viewer'
      FROM generate_series(1, 1000) g, (SELECT id FROM orgs LIMIT 1) o;
    ANALYZE`)
  for (const [name, value] of Object.entries(RECOMMENDED_PLANNER_SETTINGS)) {
    const { rows } = await db.pool.query<Record<string, string>>(`SHOW ${name}`)
    t.equal(rows[0]?.[name], value, `${name} is in force on the pool's connections`)
  }
  const { rows: [sent] } = await db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_settings WHERE name IN ('random_page_cost', 'plan_cache_mode') AND source = 'session'")
  t.equal(sent?.n, 0, 'the sidecar sets nothing per session (a transaction pooler would leak it)')

  const ids = (await db.pool.query<{ id: string }>('SELECT id FROM personal_access_tokens ORDER BY random() LIMIT 12')).rows.map(r => r.id)
  const keyIds = (await db.pool.query<{ id: string }>('SELECT id FROM api_keys LIMIT 12')).rows.map(r => r.id)
  const hashes = Array.from({ length: 12 }, () => randomBytes(32))
  const plans = new Map<string, string[]>()
  const client = await db.pool.connect()
  t.teardown(() => client.release())
  const ex = explaining(db, client, plans)
  await patStates(ex, ids)
  await patStates(ex, ids.slice(0, 1))
  await apiKeyStates(ex, hashes)
  const tags = (await db.pool.query<{ tag: string }>('SELECT lookup_tag::text AS tag FROM personal_access_tokens WHERE lookup_tag IS NOT NULL LIMIT 12')).rows.map(r => r.tag)
  await patPrefixEntry(ex, 'hg_pat_abc')
  await patTagCandidates(ex, tags)
  await patTagCandidates(ex, tags.slice(0, 1))
  await tagPat(ex, ids[0] ?? '', '42')
  await touchPats(ex, ids, new Date())
  await touchApiKeys(ex, keyIds, new Date())
  t.same(new Set([...plans.keys()].map(k => k.split(' ')[0])), new Set(['hg_api_key_states', 'hg_api_key_touch', 'hg_pat_prefix', 'hg_pat_states', 'hg_pat_tag', 'hg_pat_tagged', 'hg_pat_touch']))
  for (const [name, nodes] of plans) {
    t.ok(nodes.length > 0, `${name}: reads a table`)
    t.same(nodes.filter(n => n.startsWith('Seq Scan')), [], `${name}: no sequential scan (${nodes.join(', ')})`)
  }
})

// Planned once per connection, not per request: left to choose, PostgreSQL
// re-planned the fresh-state batch on most executions (7,523 of 9,000 in a
// database of 1,000 tokens; 7 of these 40 here).
t.test('the fresh-state statement is planned once per connection and its plan reused', async t => {
  const url = await tunedDatabase(t)
  const db = createDb({ url, poolSize: 1, connectTimeoutMs: 5000, queryTimeoutMs: 10_000 })
  t.teardown(() => db.close())
  await migrate(db.pool)
  const { rows } = await db.pool.query<{ id: string }>(`
    WITH o AS (INSERT INTO orgs (slug, name) VALUES ('o', 'O') RETURNING id),
         u AS (INSERT INTO users (email) SELECT 'u' || g || '@example.test' FROM generate_series(1, 50) g RETURNING id)
    INSERT INTO personal_access_tokens (user_id, org_id, name, prefix, secret_hash)
    SELECT u.id, o.id, 'pat', 'hg_pat_' || substr(md5(u.id::text), 1, 3), 'not-a-hash' FROM u, o RETURNING id`)
  const ids = rows.map(r => r.id)
  const runs = 40
  for (let i = 0; i < runs; i++) {
    const batch = ids.slice(i % 20, i % 20 + 1 + (i % 12))
    t.equal((await patStates(db, batch)).size, batch.length)
  }
  const { rows: [stmt] } = await db.pool.query<{ generic_plans: string, custom_plans: string }>(
    "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE name = 'hg_pat_states'")
  t.same({ generic: Number(stmt?.generic_plans), custom: Number(stmt?.custom_plans) }, { generic: runs, custom: 0 }, 'one generic plan, run every time')
})
