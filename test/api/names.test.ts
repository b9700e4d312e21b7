import t from 'tap'
import { request } from '../helpers/http.js'
import { rememberSecret, startStack } from '../helpers/stack.js'

/** docs/DESIGN.md §2.1, issue 17 item 11: names refuse control and bidi characters; stored text is printed escaped. */

const HOSTILE: Record<string, string> = {
  'an ESC sequence': 'ci\u001b[2K\u001b[1Grevoked',
  'a newline (a fake row)': 'ci\n00000000-0000-0000-0000-000000000000  hg_pat_abc  active',
  'a carriage return': 'ci\rfake',
  'U+202E right-to-left override': 'ci\u202egpj.exe',
  'U+2066 isolate': 'ci\u2066x\u2069',
  'a zero-width joiner': 'c\u200di',
  'U+2028 line separator': 'ci\u2028x',
  'a C1 control (CSI)': 'ci\u009b2J',
  NUL: 'ci\u0000x',
  'a lone surrogate': 'ci\ud800x'
}
/** What must never reach a terminal raw (a line ends with the one newline the CLI writes). */
const RAW = /(?!\n)[\p{Cc}\p{Cf}\u2028\u2029]/u

t.test('admin API: a name with a control or bidi character is 400 with a registered code, NUL included (not 503)', async t => {
  const env = await startStack(t)
  const orgId = await env.createOrg()
  const userId = await env.createUser()
  await env.addMember(orgId, userId, 'admin')
  const headers = { 'content-type': 'application/json' }
  for (const [what, name] of Object.entries(HOSTILE)) {
    for (const [path, body] of [
      ['/admin/personal-access-tokens', { userId, orgId, name }],
      ['/admin/api-keys', { orgId, createdBy: userId, name, role: 'viewer' }]
    ] as const) {
      const res = await request(env.adminPort, path, { method: 'POST', headers, body: JSON.stringify(body) })
      t.equal(res.statusCode, 400, `${path}: ${what}`)
      t.match(res.json(), { error: 'bad_request', message: /control characters/ }, `${path}: ${what}`)
    }
  }
  const count = await env.sql.query<{ n: string }>('SELECT (SELECT count(*) FROM personal_access_tokens) + (SELECT count(*) FROM api_keys) AS n')
  t.equal(Number(count.rows[0]?.n), 0, 'nothing stored')
  const fine = await request(env.adminPort, '/admin/personal-access-tokens', { method: 'POST', headers, body: JSON.stringify({ userId, orgId, name: 'Résumé scanner — ci/cd 🚀' }) })
  t.equal(fine.statusCode, 201, 'letters, punctuation and emoji are names')
  rememberSecret(fine.json<{ token: string }>().token)
})

t.test('CLI: create refuses such a name; list and revoke print stored names escaped', async t => {
  const env = await startStack(t)
  const orgId = await env.createOrg()
  const userId = await env.createUser()
  await env.addMember(orgId, userId, 'admin')

  const refused = await env.cli('token', 'create', '--user-id', userId, '--org-id', orgId, '--name', 'ci\u001b[31mred')
  t.equal(refused.code, 1)
  t.match(refused.stderr, /control characters/)

  // Rows written before the check (or by another tool) may hold anything PostgreSQL stores.
  const pat = await env.mintPat({ userId, orgId })
  const key = await env.service.createApiKey({ orgId, createdBy: userId, name: 'k', role: 'viewer' })
  rememberSecret(key.token)
  const evil = Object.entries(HOSTILE).filter(([what]) => what !== 'NUL' && what !== 'a lone surrogate').map(([, n]) => n).join('|')
  await env.sql.query('UPDATE personal_access_tokens SET name = $1 WHERE id = $2', [evil, pat.id])
  await env.sql.query('UPDATE api_keys SET name = $1 WHERE id = $2', [evil, key.id])

  const list = await env.cli('token', 'list', '--user-id', userId)
  t.equal(list.code, 0, list.stderr)
  t.notMatch(list.stdout, RAW, 'no raw control or bidi character')
  t.equal(list.stdout.split('\n').filter(l => l !== '').length, 1, 'one line per row: no fake rows')
  t.match(list.stdout, '\\u001b[2K', 'shown escaped')
  t.match(list.stdout, '\\u202e')
  const json = await env.cli('token', 'list', '--user-id', userId, '--json')
  t.notMatch(json.stdout, RAW)
  t.equal((JSON.parse(json.stdout) as Array<{ name: string }>)[0]?.name, evil, '--json parses back to the stored name')

  const keys = await env.cli('api-key', 'list', '--org-id', orgId)
  t.equal(keys.code, 0, keys.stderr)
  t.notMatch(keys.stdout, RAW)
  t.equal(keys.stdout.split('\n').filter(l => l !== '').length, 1)
  const keysJson = await env.cli('api-key', 'list', '--org-id', orgId, '--json')
  t.notMatch(keysJson.stdout, RAW)

  const self = await env.get('/api/personal-access-tokens', pat.token)
  t.equal(self.statusCode, 200)
  t.notMatch(self.text, RAW, 'the self-service list escapes them too')
  t.equal(self.json<Array<{ name: string }>>()[0]?.name, evil)
})
