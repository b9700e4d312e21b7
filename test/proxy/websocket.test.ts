import t from 'tap'
import WebSocket from 'ws'
import { startStack } from '../helpers/stack.js'
import { startEchoUpstream } from '../helpers/websocket.js'

t.test('WebSocket upgrades go through the same authentication and carry the identity headers', async t => {
  const { url: upstreamUrl, upgrades } = await startEchoUpstream(t)

  const env = await startStack(t, { config: { routes: [{ prefix: '/', upstream: upstreamUrl }] } })
  const pat = await env.mintPat({ role: 'viewer' })

  const open = (headers: Record<string, string>): Promise<WebSocket | number> => new Promise(resolve => {
    const ws = new WebSocket(`ws://127.0.0.1:${env.port}/live`, { headers })
    ws.on('open', () => resolve(ws))
    ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0))
    ws.on('error', () => resolve(-1))
  })

  t.equal(await open({}), 401, 'no credential: refused before the upgrade')
  t.equal(await open({ 'x-api-key': 'hg_pat_' + '0'.repeat(48) }), 401, 'unknown credential')
  t.equal(upgrades.length, 0)

  const ws = await open({ 'x-api-key': pat.token, 'x-hg-role': 'owner' })
  if (typeof ws === 'number') throw new Error(`upgrade refused: ${ws}`)
  const reply = await new Promise<string>(resolve => {
    ws.once('message', d => resolve(String(d)))
    ws.send('hi')
  })
  t.equal(reply, 'echo:hi')
  ws.close()
  const h = upgrades[0] ?? {}
  t.equal(h['x-hg-user-id'], pat.userId)
  t.equal(h['x-hg-role'], 'viewer', 'the forged role was stripped')
  t.equal(h['x-hg-credential-id'], pat.id)
  t.notOk('x-api-key' in h, 'credential not forwarded')
})
