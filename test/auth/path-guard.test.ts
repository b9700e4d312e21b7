import fc from 'fast-check'
import t from 'tap'
import { checkPath } from '../../src/auth/path-guard.js'

t.test('table: what passes and what is refused', async t => {
  const ok: Array<[string, string]> = [
    ['/', '/'],
    ['/api/scans', '/api/scans'],
    ['/api/scans/1?x=1&y=%2F', '/api/scans/1'],
    ['/api/scans/%41b', '/api/scans/Ab'],
    ['/api/scans/a.b/c...d', '/api/scans/a.b/c...d'],
    ['/api/r%C3%A9sum%C3%A9', '/api/résumé'],
    ['/api/scans/.well', '/api/scans/.well']
  ]
  for (const [raw, path] of ok) t.same(checkPath(raw), { ok: true, path }, raw)
  const bad = [
    '', 'api/scans', '*', 'http://evil.example/api', '/api/scans/../admin', '/api/./scans', '/api/scans/..', '/api/scans/.',
    '/api/scans/..%2Fadmin', '/api/%2e%2e/x', '/api/%2E%2E/x', '/api/.%2e/x', '/api/scans%2fadmin', '/api/scans%5cadmin',
    '/api/scans\\..\\admin', '/api/scans%00', '/api/%252e%252e/x', '/api/scans/..;/admin', '/api/scans/%zz', '/api/scans/%e0%80',
    '/api/scans?x=%zz', '/api/scans#frag', '/api/%0d%0aSet-Cookie:x'
  ]
  for (const raw of bad) t.same(checkPath(raw), { ok: false }, raw)
})

const segmentChars = fc.constantFrom('a', 'b', '.', '%2e', '%2E', '%2f', '%2F', '%5c', '%5C', '%00', '\\', ';', '%25', '%41', '..', '/', '%')
const hostilePath = fc.array(fc.array(segmentChars, { maxLength: 5 }).map(a => a.join('')), { maxLength: 6 }).map(segs => '/' + segs.join('/'))

/** Tomcat-style path parameters: `seg;param` reads as `seg`. */
function stripParams (p: string): string {
  return p.split('/').map(s => s.split(';')[0]).join('/')
}

/** What a lenient upstream might make of a path: decode repeatedly, fold backslashes, resolve dot segments. */
function upstreamView (raw: string): string {
  let p = raw.split('?')[0] ?? ''
  for (let i = 0; i < 3; i++) {
    try {
      p = decodeURIComponent(p)
    } catch {
      break
    }
  }
  p = p.replace(/\\/g, '/')
  const out: string[] = []
  for (const seg of stripParams(p).split('/')) {
    if (seg === '..') out.pop()
    else if (seg !== '.') out.push(seg)
  }
  return out.join('/')
}

t.test('property: whatever passes decodes to one path, with no dot segment, even for a lenient upstream', async t => {
  fc.assert(fc.property(hostilePath, raw => {
    const r = checkPath(raw)
    if (!r.ok) return true
    // The upstream's reading (however lenient) equals the policy's reading.
    const policyView = stripParams(r.path)
    return !r.path.split('/').some(s => s === '.' || s === '..') &&
      !r.path.includes('\\') && !r.path.includes('\u0000') &&
      upstreamView(raw) === policyView
  }), { numRuns: 5000 })
  t.pass('5000 generated paths')
})

t.test('property: arbitrary strings never throw', async t => {
  fc.assert(fc.property(fc.string({ maxLength: 200 }), s => {
    const r = checkPath('/' + s)
    return typeof r.ok === 'boolean'
  }), { numRuns: 5000 })
  t.pass()
})
