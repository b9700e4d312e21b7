import { randomBytes } from 'node:crypto'
import http from 'node:http'
import bcrypt from 'bcrypt'
import { insertPat } from '../../src/store/queries.js'
import { rememberSecret, type Stack } from './stack.js'

// Helpers for tests that line requests up in the bcrypt pool: a held token's
// compare holds the pool's one slot until the test releases it, while the test
// arranges what waits behind it (Stack.hold: no race with the machine's load).

export { until } from './until.js'

/** A valid PAT whose hash has the given bcrypt cost. */
export async function tokenWithCost (env: Stack, cost: number): Promise<string> {
  const orgId = await env.createOrg()
  const userId = await env.createUser()
  await env.addMember(orgId, userId, 'member')
  const token = 'hg_pat_' + randomBytes(24).toString('hex')
  rememberSecret(token)
  await insertPat(env.sidecar.db, { userId, orgId, name: 'queued', prefix: token.slice(0, 10), secretHash: await bcrypt.hash(token, cost), permissions: null, expiresAt: null })
  return token
}

/** A valid PAT whose compares wait for release() (the stack's teardown releases it too). */
export async function heldToken (env: Stack): Promise<{ token: string, release: () => void }> {
  const token = await tokenWithCost(env, 4)
  return { token, release: env.hold(token) }
}

export interface Sent {
  response: Promise<{ status: number, headers: http.IncomingHttpHeaders, body: string } | null>
  /** Closes the connection, as a client that gives up does. */
  abandon(): void
}

/** A request on a connection of its own (no agent), so closing it closes only this request. */
export function send (env: Stack, token: string): Sent {
  const req = http.request({ host: '127.0.0.1', port: env.port, path: '/api/scans', agent: false, headers: { 'x-api-key': token } })
  const response = new Promise<{ status: number, headers: http.IncomingHttpHeaders, body: string } | null>(resolve => {
    req.on('response', res => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { body += c })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }))
    })
    req.on('error', () => resolve(null))
  })
  req.end()
  return { response, abandon: () => req.destroy() }
}

/** Connections the proxy listener holds open. */
export const connections = (env: Stack): Promise<number> =>
  new Promise((resolve, reject) => env.sidecar.proxy.server.getConnections((err, n) => err === null ? resolve(n) : reject(err)))

/** A counter's value from the sidecar's /metrics text (0 when absent). */
export async function metric (env: Stack, series: string): Promise<number> {
  const body = (await env.sidecar.metrics.render()).body
  for (const line of body.split('\n')) {
    if (line.startsWith(series + ' ')) return Number(line.slice(series.length + 1))
  }
  return 0
}
