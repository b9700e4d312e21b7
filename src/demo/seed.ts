import type { CredentialService, CreatedCredential } from '../management/service.js'
import type { Db } from '../store/postgres.js'

export const DEMO_ORG_SLUG = 'demo'
export const DEMO_USER_EMAIL = 'demo@example.test'

export interface DemoSeed {
  orgId: string
  userId: string
  /** Set when the demo org was created just now (first start). */
  created: boolean
}

/** Ensures the demo org and its admin user exist; idempotent. */
export async function seedDemo (db: Db): Promise<DemoSeed> {
  const existing = await db.query<{ org_id: string, user_id: string }>('hg_demo_find', `
    SELECT o.id AS org_id, u.id AS user_id FROM orgs o, users u
    WHERE o.slug = $1 AND u.email = $2`, [DEMO_ORG_SLUG, DEMO_USER_EMAIL])
  const row = existing[0]
  if (row !== undefined) return { orgId: row.org_id, userId: row.user_id, created: false }
  const org = await db.query<{ id: string }>('hg_demo_org', `
    INSERT INTO orgs (slug, name) VALUES ($1, 'Demo org')
    ON CONFLICT (slug) DO UPDATE SET name = orgs.name RETURNING id`, [DEMO_ORG_SLUG])
  const user = await db.query<{ id: string }>('hg_demo_user', `
    INSERT INTO users (email, status) VALUES ($1, 'active')
    ON CONFLICT (email) DO UPDATE SET status = users.status RETURNING id`, [DEMO_USER_EMAIL])
  const orgId = org[0]?.id
  const userId = user[0]?.id
  if (orgId === undefined || userId === undefined) throw new Error('demo seed returned no rows')
  await db.query('hg_demo_member', `
    INSERT INTO org_memberships (org_id, user_id, role) VALUES ($1, $2, 'admin')
    ON CONFLICT (org_id, user_id) DO NOTHING`, [orgId, userId])
  return { orgId, userId, created: true }
}

export function mintDemoToken (service: CredentialService, seed: DemoSeed): Promise<CreatedCredential> {
  return service.createPat({ userId: seed.userId, orgId: seed.orgId, name: `demo token ${new Date().toISOString()}` })
}
