export interface Migration {
  version: number
  name: string
  sql: string
}

/**
 * Ordered, append-only. orgs, users and org_memberships belong to the scan
 * services: created only when absent (standalone use and tests).
 */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'initial schema',
    sql: `
CREATE TABLE IF NOT EXISTS orgs (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  slug text UNIQUE NOT NULL,
  name text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS users (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  email text UNIQUE NOT NULL,
  status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'deleted')),
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS org_memberships (
  org_id uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  role text NOT NULL,
  PRIMARY KEY (org_id, user_id)
);
CREATE INDEX IF NOT EXISTS org_memberships_user_idx ON org_memberships (user_id);

CREATE TABLE personal_access_tokens (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  org_id uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
  name text NOT NULL,
  prefix char(10) NOT NULL,
  secret_hash text NOT NULL,
  permissions text[] NULL,
  expires_at timestamptz NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  last_used_at timestamptz NULL,
  revoked_at timestamptz NULL
);
CREATE INDEX personal_access_tokens_prefix_idx ON personal_access_tokens (prefix);
CREATE INDEX personal_access_tokens_user_org_idx ON personal_access_tokens (user_id, org_id);

CREATE TABLE api_keys (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  org_id uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
  created_by uuid NULL REFERENCES users (id) ON DELETE SET NULL,
  name text NOT NULL,
  prefix char(10) NOT NULL,
  secret_sha256 bytea NOT NULL UNIQUE,
  role text NOT NULL,
  permissions text[] NULL,
  expires_at timestamptz NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  last_used_at timestamptz NULL,
  revoked_at timestamptz NULL
);
CREATE INDEX api_keys_org_idx ON api_keys (org_id);
`
  },
  {
    version: 2,
    name: 'credential events',
    // No foreign keys: the trail outlives the credentials, users and orgs it names.
    // created and revoked happen once per credential; the unique index makes a
    // retried management call record them once.
    sql: `
CREATE TABLE credential_events (
  id bigserial PRIMARY KEY,
  at timestamptz NOT NULL DEFAULT now(),
  kind text NOT NULL,
  credential_type text NOT NULL,
  credential_id uuid NULL,
  prefix char(10) NULL,
  org_id uuid NULL,
  user_id uuid NULL,
  actor_type text NULL,
  actor_id text NULL,
  client_ip text NULL,
  request_id text NULL,
  detail jsonb NULL
);
CREATE INDEX credential_events_at_idx ON credential_events (at DESC, id DESC);
CREATE INDEX credential_events_credential_idx ON credential_events (credential_id, at DESC, id DESC);
CREATE INDEX credential_events_org_idx ON credential_events (org_id, at DESC, id DESC);
CREATE INDEX credential_events_user_idx ON credential_events (user_id, at DESC, id DESC);
CREATE INDEX credential_events_kind_idx ON credential_events (kind, at DESC, id DESC);
CREATE UNIQUE INDEX credential_events_once_idx ON credential_events (credential_id, kind) WHERE kind IN ('created', 'revoked');
`
  },
  {
    version: 3,
    name: 'lookup tags',
    // docs/DESIGN.md §2 step 4: a nullable column (no table rewrite; rows minted
    // before keep NULL and are tagged on their first successful verification),
    // an index on the tags, and one on the prefixes of the rows still untagged
    // (it shrinks as they are tagged). API keys get the tag too (every minted
    // credential has one) though they are looked up by their SHA-256.
    sql: `
ALTER TABLE personal_access_tokens ADD COLUMN IF NOT EXISTS lookup_tag bigint NULL;
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS lookup_tag bigint NULL;
CREATE INDEX IF NOT EXISTS personal_access_tokens_lookup_tag_idx ON personal_access_tokens (lookup_tag) WHERE lookup_tag IS NOT NULL;
CREATE INDEX IF NOT EXISTS personal_access_tokens_untagged_idx ON personal_access_tokens (prefix) WHERE lookup_tag IS NULL;
CREATE INDEX IF NOT EXISTS api_keys_lookup_tag_idx ON api_keys (lookup_tag) WHERE lookup_tag IS NOT NULL;
`
  }
]
