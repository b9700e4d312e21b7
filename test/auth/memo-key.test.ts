import { createHmac } from 'node:crypto'
import fc from 'fast-check'
import t from 'tap'
import { createMemo, hmacSha256 } from '../../src/auth/memo.js'

// The memo key is HMAC-SHA256 (docs/DESIGN.md §2 step 4), computed from two one-shot hashes
// instead of a Hmac object per request: it must be exactly what createHmac gives.
const key7bit = fc.uint8Array({ minLength: 64, maxLength: 64, max: 0x7f })

t.test('hmacSha256 equals createHmac for any 7-bit key and any message', async t => {
  fc.assert(fc.property(key7bit, fc.string({ unit: 'binary', maxLength: 300 }), (key, message) => {
    const expected = createHmac('sha256', key).update(message).digest('base64')
    return hmacSha256(key)(message) === expected
  }), { numRuns: 500 })
  t.pass('500 random keys and messages (any Unicode, empty to 300 code points)')

  const key = new Uint8Array(64).fill(0x41)
  const mac = hmacSha256(key)
  const token = 'hg_pat_' + '0'.repeat(48)
  t.equal(mac(token), createHmac('sha256', key).update(token).digest('base64'), 'a credential-shaped message')
  t.equal(mac(token), mac(token), 'the shared outer buffer leaves no state behind')
  t.equal(mac('hg_pat_' + '1'.repeat(48)), createHmac('sha256', key).update('hg_pat_' + '1'.repeat(48)).digest('base64'))
})

t.test('hmacSha256 refuses keys it cannot pad as a string', async t => {
  t.throws(() => hmacSha256(new Uint8Array(32)), /64 bytes/)
  const high = new Uint8Array(64)
  high[10] = 0x80
  t.throws(() => hmacSha256(high), /below 0x80/)
})

t.test('each memo has its own random key', async t => {
  const opts = { ttlSeconds: 1, maxEntries: 1, negativeTtlSeconds: 1, negativeMaxEntries: 1 }
  const keys = new Set(Array.from({ length: 20 }, () => createMemo(opts).key('hg_pat_' + 'a'.repeat(48))))
  t.equal(keys.size, 20)
  for (const k of keys) t.match(k, /^[A-Za-z0-9+/]{43}=$/, 'base64 of 32 bytes')
})
