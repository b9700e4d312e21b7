import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { WebSocketServer } from 'ws'

/** A real WebSocket upstream answering each message with `echo:<message>`; closed by the test's teardown. */
export async function startEchoUpstream (t: { teardown(fn: () => unknown): void }): Promise<{ url: string, upgrades: http.IncomingHttpHeaders[] }> {
  const server = http.createServer()
  const wss = new WebSocketServer({ server })
  const upgrades: http.IncomingHttpHeaders[] = []
  wss.on('connection', (socket, req) => {
    upgrades.push(req.headers)
    socket.on('message', data => socket.send(`echo:${String(data)}`))
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>(resolve => { wss.close(); server.closeAllConnections(); server.close(() => resolve()) }))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, upgrades }
}
