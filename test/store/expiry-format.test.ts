import fc from 'fast-check'
import pg from 'pg'
import t from 'tap'
import { expiresIsoSql } from '../../src/store/queries.js'
import { createTestDatabase } from '../helpers/services.js'

// The fresh-state queries format expiry in SQL (the hot path parses no
// timestamp); the header must read exactly as Date#toISOString would.
t.test('expiry formatted by PostgreSQL equals Date#toISOString, whatever the session time zone', async t => {
  const url = await createTestDatabase(t)
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  t.teardown(() => client.end())
  const sql = `SELECT ${expiresIsoSql('$1::timestamptz')} AS iso`
  for (const zone of ['UTC', 'America/St_Johns', 'Asia/Kathmandu']) {
    await client.query(`SET TIME ZONE '${zone}'`)
    await fc.assert(fc.asyncProperty(
      fc.date({ min: new Date('1970-01-01T00:00:00.000Z'), max: new Date('9999-12-31T23:59:59.999Z'), noInvalidDate: true }),
      fc.integer({ min: 0, max: 999 }),
      async (d, micros) => {
        // Microseconds below the millisecond are truncated, as a JS Date would.
        const text = d.toISOString().replace('Z', `${String(micros).padStart(3, '0')}Z`)
        const { rows } = await client.query<{ iso: string }>(sql, [text])
        return rows[0]?.iso === d.toISOString()
      }), { numRuns: 200 })
    t.pass(`${zone}: 200 timestamps`)
  }
  const { rows } = await client.query<{ iso: string | null }>(sql, [null])
  t.equal(rows[0]?.iso, null, 'no expiry stays null')
})
