import { randomBytes } from 'node:crypto'
import t from 'tap'
import { maskCredentials } from '../../src/mask.js'
import { leakedLines, rememberSecret, startStack } from '../helpers/stack.js'

/** docs/DESIGN.md §2.1, issue 17 item 13: credential-shaped values are masked in logs also when percent-encoded. */

const fake = (): string => `hg_pat_${randomBytes(24).toString('hex')}`

/** Every way to percent-encode a string's characters: each character encoded when `pick(i)`. */
function encode (s: string, pick: (i: number) => boolean, upper = false, times = 1): string {
  return [...s].map((c, i) => {
    if (!pick(i)) return c
    let e = '%' + c.charCodeAt(0).toString(16).padStart(2, '0')
    if (upper) e = e.toUpperCase()
    for (let n = 1; n < times; n++) e = e.replace('%', '%25')
    return e
  }).join('')
}

function decodeAll (s: string): string {
  let out = s
  for (let i = 0; i < 8; i++) out = out.replace(/%([0-9A-Fa-f]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16)))
  return out
}

t.test('maskCredentials: plain, percent-encoded in part or whole, any case, encoded more than once', async t => {
  const secret = fake()
  const forms = [
    secret,
    encode(secret, i => i === 0),
    encode(secret, () => true),
    encode(secret, () => true, true),
    encode(secret, i => i % 2 === 0),
    encode(secret, i => i >= 7),
    encode(secret, i => i === 0, false, 2),
    encode(secret, () => true, true, 3),
    secret.toUpperCase(),
    encode(secret.toUpperCase(), i => i < 3)
  ]
  for (const f of forms) {
    const masked = maskCredentials(`/api/scans/${f}/x`)
    t.equal(masked, `/api/scans/${decodeAll(f).slice(0, 10)}…/x`, f.slice(0, 30))
    t.notMatch(decodeAll(masked), /hg_(pat|key)_[0-9a-f]{11}/i, `${f.slice(0, 30)}: nothing past the prefix survives`)
  }
  t.equal(maskCredentials('/api/scans/%41%42/x?y=%20'), '/api/scans/%41%42/x?y=%20', 'other escapes untouched')
  t.equal(maskCredentials('hg_key_abc'), 'hg_key_abc', 'three hex digits are a prefix, not a secret')
})

t.test('the request log never holds a percent-encoded credential; a credential-shaped X-Request-Id is replaced', async t => {
  const env = await startStack(t)
  const pat = await env.mintPat({ role: 'viewer' })
  const other = fake()
  rememberSecret(other)
  const paths = [
    `/api/scans/%68${pat.token.slice(1)}/x`,
    `/api/scans/${encode(pat.token, () => true, true)}`,
    `/api/scans/${encode(other, i => i % 3 === 0)}/x`,
    `/api/scans/${encode(other, i => i === 0, false, 2)}/x`, // refused (400) and still logged
    `/api/status/${encode(other, i => i > 6)}`
  ]
  for (const p of paths) await env.get(p, pat.token)
  const res = await env.get('/api/scans', pat.token, { 'x-request-id': other })
  t.equal(res.statusCode, 200)
  t.not(env.upstream.requests.at(-1)?.headers['x-request-id'], other, 'not forwarded as the request id')

  const lines = env.logs.lines.filter(l => l.includes('"msg":"request"'))
  t.equal(lines.length, paths.length + 1, 'one line per request')
  for (const secret of [pat.token, other]) {
    const tail = secret.slice(10)
    for (const line of lines) {
      t.notOk(decodeAll(line).toLowerCase().includes(tail), `no form of ${secret.slice(0, 10)}… in ${line.slice(0, 160)}`)
    }
  }
  t.same(leakedLines(lines.map(decodeAll)), [], 'the leak watch, on the decoded lines')
})
