import { randomBytes } from 'node:crypto'
import bcrypt from 'bcrypt'
import t from 'tap'
import { insertPat } from '../../src/store/queries.js'
import { rememberSecret, startStack } from '../helpers/stack.js'

t.test('tokens sharing one prefix each authenticate as their own user', async t => {
  const env = await startStack(t)
  const orgId = await env.createOrg()
  const prefix = 'hg_pat_abc'
  const tokens: Array<{ token: string, userId: string, id: string }> = []
  for (let i = 0; i < 4; i++) {
    const userId = await env.createUser()
    await env.addMember(orgId, userId, i % 2 === 0 ? 'viewer' : 'member')
    const token = prefix + randomBytes(24).toString('hex').slice(3)
    rememberSecret(token)
    const rec = await insertPat(env.sidecar.db, { userId, orgId, name: `t${i}`, prefix, secretHash: await bcrypt.hash(token, 4), permissions: null, expiresAt: null })
    tokens.push({ token, userId, id: rec.id })
  }
  t.equal(tokens[0]?.token.length, 55)
  // Twice: the second round runs on the warm prefix cache and memo.
  for (let round = 0; round < 2; round++) {
    for (const [i, tok] of tokens.entries()) {
      const res = await env.get('/api/scans', tok.token)
      t.equal(res.statusCode, 200, `token ${i} round ${round}`)
      const seen = env.upstream.requests.at(-1)
      t.equal(seen?.headers['x-hg-user-id'], tok.userId)
      t.equal(seen?.headers['x-hg-credential-id'], tok.id)
      t.equal(seen?.headers['x-hg-role'], i % 2 === 0 ? 'viewer' : 'member')
    }
  }
  const wrong = prefix + randomBytes(24).toString('hex').slice(3)
  const res = await env.get('/api/scans', wrong)
  t.equal(res.statusCode, 401)
})

t.test('a token minted after its prefix was cached is still found (stale cache rechecked once)', async t => {
  const env = await startStack(t)
  const orgId = await env.createOrg()
  const userId = await env.createUser()
  await env.addMember(orgId, userId, 'member')
  const prefix = 'hg_pat_def'
  const first = prefix + randomBytes(24).toString('hex').slice(3)
  rememberSecret(first)
  await insertPat(env.sidecar.db, { userId, orgId, name: 'a', prefix, secretHash: await bcrypt.hash(first, 4), permissions: null, expiresAt: null })
  t.equal((await env.get('/api/scans', first)).statusCode, 200, 'prefix now cached with one candidate')
  const second = prefix + randomBytes(24).toString('hex').slice(3)
  rememberSecret(second)
  // Inserted behind the service's back: no cache invalidation happens.
  await insertPat(env.sidecar.db, { userId, orgId, name: 'b', prefix, secretHash: await bcrypt.hash(second, 4), permissions: null, expiresAt: null })
  t.equal((await env.get('/api/scans', second)).statusCode, 200)
})
