import fc from 'fast-check'
import t from 'tap'
import { parseCredential } from '../../src/credentials/format.js'
import { maskCredentials } from '../../src/mask.js'
import { generateCredential } from '../../src/credentials/mint.js'

t.test('parses both kinds and nothing else', async t => {
  const pat = generateCredential('pat').token
  const key = generateCredential('api_key').token
  t.match(pat, /^hg_pat_[0-9a-f]{48}$/)
  t.match(key, /^hg_key_[0-9a-f]{48}$/)
  t.same(parseCredential(pat), { kind: 'pat', value: pat, prefix: pat.slice(0, 10) })
  t.same(parseCredential(key), { kind: 'api_key', value: key, prefix: key.slice(0, 10) })
  for (const bad of ['', pat.slice(0, 54), pat + 'a', pat.toUpperCase(), 'hg_xyz_' + pat.slice(7), pat.slice(0, 54) + 'G', ' ' + pat.slice(1), pat.slice(0, 54) + '\n']) {
    t.equal(parseCredential(bad), null, JSON.stringify(bad))
  }
})

t.test('property: only the exact format parses', async t => {
  fc.assert(fc.property(fc.string({ maxLength: 80 }), s => {
    const parsed = parseCredential(s)
    return (parsed !== null) === /^hg_(pat|key)_[0-9a-f]{48}$/.test(s)
  }), { numRuns: 10_000 })
  fc.assert(fc.property(fc.constantFrom('hg_pat_', 'hg_key_'), fc.string({ minLength: 48, maxLength: 48, unit: fc.constantFrom(...'0123456789abcdefABCDEFg ') }), (p, hex) => {
    return (parseCredential(p + hex) !== null) === /^[0-9a-f]{48}$/.test(hex)
  }), { numRuns: 10_000 })
  t.pass()
})

t.test('masking keeps the prefix only', async t => {
  const pat = generateCredential('pat').token
  const masked = maskCredentials(`GET /x/${pat}/y and ${pat.toUpperCase().replace('HG_PAT_', 'hg_pat_')}`)
  t.notMatch(masked, pat.slice(10))
  t.match(masked, pat.slice(0, 10) + '…')
})
