import t from 'tap'
import { createPolicy } from '../../src/auth/policy.js'
import { createRoleTable } from '../../src/auth/principal.js'
import { loadConfig } from '../../src/config/load.js'

t.test('first matching route and rule decide; prefixes are segment-aware', async t => {
  const config = loadConfig()
  const p = createPolicy(config)
  t.same(p.decide('GET', '/api/scans'), { public: false, permission: 'scans:read', deny: false, upstream: null, local: false })
  t.same(p.decide('GET', '/api/scans/1'), { public: false, permission: 'scans:read', deny: false, upstream: null, local: false })
  t.same(p.decide('POST', '/api/scans/1'), { public: false, permission: 'scans:write', deny: false, upstream: null, local: false })
  t.same(p.decide('GET', '/api/scansX'), { public: false, permission: null, deny: false, upstream: null, local: false }, 'not under /api/scans')
  t.same(p.decide('GET', '/api/status'), { public: true, permission: null, deny: false, upstream: null, local: false })
  t.same(p.decide('OPTIONS', '/api/scans'), { public: false, permission: null, deny: false, upstream: null, local: false }, 'no rule for OPTIONS')
})

t.test('defaultDeny, per-route upstreams, public rules', async t => {
  const p = createPolicy({
    defaultDeny: true,
    routes: [
      { prefix: '/a', upstream: 'http://127.0.0.1:1', rules: [{ methods: ['GET'], permission: 'scans:read' }, { prefix: '/a/open', public: true }] },
      { prefix: '/b' }
    ]
  })
  t.same(p.decide('GET', '/a/x'), { public: false, permission: 'scans:read', deny: false, upstream: 'http://127.0.0.1:1', local: false })
  t.same(p.decide('POST', '/a/open/1'), { public: true, permission: null, deny: false, upstream: 'http://127.0.0.1:1', local: false })
  t.same(p.decide('POST', '/a/x'), { public: false, permission: null, deny: true, upstream: 'http://127.0.0.1:1', local: false })
  t.same(p.decide('POST', '/b/x'), { public: false, permission: null, deny: false, upstream: null, local: false }, 'a route with no rules: authenticated')
  t.same(p.decide('GET', '/c'), { public: false, permission: null, deny: true, upstream: null, local: false })
  t.same(p.upstreams, ['http://127.0.0.1:1'])
  const withLocal = createPolicy({ defaultDeny: true, routes: [] }, ['/api/personal-access-tokens'])
  t.same(withLocal.decide('DELETE', '/api/personal-access-tokens/x'), { public: false, permission: null, deny: false, upstream: null, local: true }, 'self-service paths: authenticated, not subject to defaultDeny')
})

t.test('effective permissions: role intersected with the subset, sorted', async t => {
  const roles = createRoleTable(loadConfig().roles)
  t.same(roles.effective('viewer', null).list, ['reports:read', 'scans:read'])
  t.same(roles.effective('admin', ['scans:read']).header, 'scans:read')
  t.same(roles.effective('viewer', ['scans:write', 'scans:read']).list, ['scans:read'], 'a downgrade narrows')
  t.same(roles.effective('owner', ['scans:read']).list, ['scans:read'], 'an upgrade never widens beyond the subset')
  t.same(roles.effective('ghost', null).list, [], 'an unknown role grants nothing')
  t.ok(roles.rank('viewer') < roles.rank('owner'))
})
