import net from 'node:net'
import fc from 'fast-check'
import t from 'tap'
import { createPolicy, type PolicyDecision } from '../../src/auth/policy.js'
import { routeOf } from '../../src/auth/pipeline.js'
import { loadConfig } from '../../src/config/load.js'
import type { Config } from '../../src/config/schema.js'
import { startStack } from '../helpers/stack.js'

/** docs/DESIGN.md §2 step 1, issue 17 items 3 (path spelling) and 4 (query strings). */

// --- the property: no spelling is more permissive than the canonical path ---

const defaults = loadConfig()
const nested: Pick<Config, 'routes' | 'defaultDeny'> = {
  defaultDeny: true,
  routes: [
    {
      prefix: '/api/scans',
      rules: [
        { prefix: '/api/scans/public', public: true },
        { methods: ['GET', 'HEAD'], permission: 'scans:read' },
        { methods: ['POST', 'PUT', 'PATCH', 'DELETE'], permission: 'scans:write' }
      ]
    },
    { prefix: '/api/Reports', rules: [{ permission: 'reports:read' }] },
    { prefix: '/api/status', public: true }
  ]
}
const LOCAL = ['/api/personal-access-tokens', '/api/api-keys']
const POLICIES = [
  { name: 'default config', policy: createPolicy(defaults, LOCAL), prefixes: [...defaults.routes.map(r => r.prefix), ...LOCAL] },
  { name: 'nested rules, defaultDeny', policy: createPolicy(nested, LOCAL), prefixes: ['/api/scans', '/api/scans/public', '/api/reports', '/api/status', ...LOCAL] }
]
const PERMISSIONS = [...new Set(defaults.roles.flatMap(r => r.permissions))]
/** Who might ask: nobody, each role, each single permission. */
const PRINCIPALS: Array<Set<string> | null> = [null, ...defaults.roles.map(r => new Set(r.permissions)), ...PERMISSIONS.map(p => new Set([p]))]
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']

function allows (d: PolicyDecision | null, perms: Set<string> | null): boolean {
  if (d === null || d.deny) return false
  if (d.public) return true
  if (perms === null) return false
  return d.permission === null || perms.has(d.permission)
}

function decisionOf (policy: ReturnType<typeof createPolicy>, method: string, raw: string): PolicyDecision | null {
  return routeOf(policy, method, raw)?.decision ?? null
}

const segment = fc.stringMatching(/^[a-z0-9_-]{1,8}$/)
const canonicalPath = (prefixes: string[]): fc.Arbitrary<string> => fc.tuple(fc.constantFrom(...prefixes), fc.array(segment, { maxLength: 3 }))
  .map(([prefix, rest]) => [prefix.toLowerCase(), ...rest].join('/'))

function pctByte (b: number): string {
  return '%' + b.toString(16).padStart(2, '0').toUpperCase()
}

/** One way a client or a lenient router could spell the same resource. */
type Spelling = (segs: string[], pick: number) => string[]
const spellings: Record<string, Spelling> = {
  upper: (segs) => segs.map(s => s.toUpperCase()),
  mixedCase: (segs, pick) => segs.map((s, i) => [...s].map((c, j) => (i + j + pick) % 2 === 0 ? c.toUpperCase() : c).join('')),
  formatSuffix: (segs, pick) => [...segs.slice(0, -1), `${segs.at(-1) ?? ''}${['.json', '.xml', '.html', '.', '.JSON'][pick % 5] as string}`],
  pathParameter: (segs, pick) => segs.map((s, i) => i === 1 + (pick % (segs.length - 1)) ? `${s};${['v=1', 'jsessionid=x', '', 'a;b'][pick % 4] as string}` : s),
  doubleSlash: (segs, pick) => segs.flatMap((s, i) => i === 1 + (pick % (segs.length - 1)) ? [s, ''] : [s]),
  trailingSpace: (segs, pick) => segs.map((s, i) => i === 1 + (pick % (segs.length - 1)) ? s + ['%20', '%09', '%C2%A0', '%E2%80%8B', '%E3%80%80', '%0B'][pick % 6] as string : s),
  leadingSpace: (segs, pick) => segs.map((s, i) => i === 1 + (pick % (segs.length - 1)) ? '%20' + s : s),
  encodedLetters: (segs, pick) => segs.map(s => [...s].map((c, j) => (j + pick) % 3 === 0 && /[a-z0-9]/.test(c) ? pctByte(c.charCodeAt(0)) : c).join('')),
  // Letters a Unicode-aware case-insensitive router (a /iu regex) folds onto ASCII.
  unicodeFold: (segs) => segs.map(s => s.replace(/s/g, '%C5%BF').replace(/k/g, '%E2%84%AA')),
  trailingSlash: (segs) => [...segs, ''],
  withQuery: (segs, pick) => [...segs.slice(0, -1), `${segs.at(-1) ?? ''}?${['next=../../x', 'u=%2F%2e%2e', 'a=/api/status', ''][pick % 4] as string}`]
}

t.test('property: for paths under a route and any spelling of them, the decision is never more permissive than the canonical one', async t => {
  for (const { name, policy, prefixes } of POLICIES) {
    fc.assert(fc.property(
      canonicalPath(prefixes), fc.constantFrom(...METHODS), fc.array(fc.constantFrom(...Object.keys(spellings)), { minLength: 1, maxLength: 3 }), fc.nat(1000),
      (canonical, method, chosen, pick) => {
        const base = decisionOf(policy, method, canonical)
        if (base === null) throw new Error(`canonical path refused: ${canonical}`)
        let segs = canonical.split('/')
        for (const s of chosen) segs = (spellings[s] as Spelling)(segs, pick)
        const spelled = segs.join('/')
        const d = decisionOf(policy, method, spelled)
        for (const who of PRINCIPALS) {
          if (allows(d, who) && !allows(base, who)) {
            throw new Error(`${method} ${spelled} (${chosen.join('+')}) allows ${who === null ? 'anonymous' : [...who].join(',')} where ${canonical} does not`)
          }
        }
        return true
      }), { numRuns: 3000 })
    t.pass(`${name}: 3000 spellings`)
  }
})

t.test('the spellings a lenient router folds onto a route get that route\'s rule, or 400', async t => {
  const p = POLICIES[0]?.policy as ReturnType<typeof createPolicy>
  const need = (method: string, raw: string): string | null => {
    const d = decisionOf(p, method, raw)
    return d === null ? 'refused' : d.public ? 'public' : d.permission
  }
  t.equal(need('POST', '/API/SCANS'), 'scans:write')
  t.equal(need('POST', '/api/Scans'), 'scans:write')
  t.equal(need('POST', '/api/scans.json'), 'scans:write')
  t.equal(need('GET', '/api/scans/1.json'), 'scans:read')
  t.equal(need('GET', '/api/%53cans'), 'scans:read', 'an encoded capital')
  t.equal(need('GET', '/api/%C5%BFcans'), 'scans:read', 'the long s a /iu router folds onto s')
  t.equal(need('GET', '/api/scansX'), null, 'still segment-aware')
  t.equal(need('GET', '/api/scans-old'), null)
  t.equal(need('GET', '/API/STATUS'), 'public')
  for (const raw of ['/api/scans;v=1/1', '/api/scans;jsessionid=x', '/api/scans%3Bx', '/api/scans%20', '/api/%20scans', '/api/scans%C2%A0', '/api//scans', '//api/scans', '/api/scans/1//', '/api/scans%E2%80%8B.json', '/api/scans%20.json']) {
    t.equal(need('POST', raw), 'refused', raw)
  }
  t.equal(need('GET', '/api/scans/my%20scan'), 'scans:read', 'whitespace inside a segment is data')
  t.equal(need('GET', '/api/scans/'), 'scans:read', 'a trailing slash is one empty segment at the end')
})

// --- the same through a running sidecar ---

t.test('item 3: a narrowed PAT and a viewer get their rule whatever the spelling; nothing is forwarded', async t => {
  const env = await startStack(t)
  const narrowed = await env.mintPat({ role: 'member', permissions: ['reports:read'] })
  const viewer = await env.mintPat({ role: 'viewer' })
  const cases: Array<[string, string, string, number]> = [
    ['POST', '/api/scans', narrowed.token, 403],
    ['POST', '/API/SCANS', narrowed.token, 403],
    ['POST', '/api/Scans', narrowed.token, 403],
    ['POST', '/api/scans.json', narrowed.token, 403],
    ['GET', '/API/Scans/1', narrowed.token, 403],
    ['DELETE', '/api/scans;v=1/1', narrowed.token, 400],
    ['POST', '/api/scans;jsessionid=x', narrowed.token, 400],
    ['POST', '/api/scans%20', narrowed.token, 400],
    ['POST', '/api//scans', viewer.token, 400]
  ]
  for (const [method, path, token, status] of cases) {
    const res = await env.request(path, { method, headers: { 'x-api-key': token } })
    t.equal(res.statusCode, status, `${method} ${path}`)
    t.equal(res.json().error, status === 400 ? 'bad_request' : 'forbidden', `${method} ${path}: contract body`)
  }
  t.equal(env.upstream.requests.length, 0, 'the upstream saw none of them')
  const ok = await env.request('/API/Reports.json', { headers: { 'x-api-key': narrowed.token } })
  t.equal(ok.statusCode, 200, 'the permission the spelling maps to still works')
  t.equal(env.upstream.requests.at(-1)?.url, '/API/Reports.json', 'forwarded as spelled')
})

/** A raw request line: the target goes on the wire exactly as given. */
function rawGet (port: number, target: string, token: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1')
    let out = ''
    socket.on('data', (d: Buffer) => { out += d.toString('latin1') })
    socket.on('end', () => resolve(out))
    socket.on('error', reject)
    socket.write(Buffer.from(`GET ${target} HTTP/1.1\r\nHost: x\r\nX-API-Key: ${token}\r\nConnection: close\r\n\r\n`, 'latin1'))
  })
}

t.test('item 4: any syntactically valid query passes byte-exact; a malformed one is 400', async t => {
  const env = await startStack(t)
  const viewer = await env.mintPat({ role: 'viewer' })
  const queries = [
    '?next=../../x', '?u=%2F%2e%2e', '?next=../../x&u=%2F%2e%2e', '?a=/api/status/..%2f..%2fadmin', '?q=%ff%FE', '?q=caf%E9',
    '?a[]=1&a[]=2', "?s='\"", '?x=%00', '?', '?a=b?c=d', '?%2e%2e/%2e%2e', '?p=..;/x', '?p=//evil', '?a=%20'
  ]
  for (const q of queries) {
    const res = await env.get(`/api/scans/1${q}`, viewer.token)
    t.equal(res.statusCode, 200, q)
    t.equal(env.upstream.requests.at(-1)?.url, `/api/scans/1${q}`, `${q}: the upstream got the exact target`)
  }
  const raw = await rawGet(env.port, '/api/scans?x=a|b{c}`d^e', viewer.token)
  t.match(raw, /^HTTP\/1\.1 200 /, 'characters clients leave unescaped')
  t.equal(env.upstream.requests.at(-1)?.url, '/api/scans?x=a|b{c}`d^e')
  for (const q of ['?x=%zz', '?x=%4', '?x=%']) {
    const before = env.upstream.requests.length
    const res = await env.get(`/api/scans${q}`, viewer.token)
    t.equal(res.statusCode, 400, `${q}: malformed percent-encoding`)
    t.equal(env.upstream.requests.length, before, `${q}: not forwarded`)
  }
})
